#include "json.h"

#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace l4 {

namespace {
const int kMaxDepth = 64;
}

class JsonParser {
 public:
  JsonParser(const std::string& text, const std::string& what) : s_(text), what_(what) {}

  Json parse_document() {
    Json value = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected trailing characters");
    return value;
  }

 private:
  const std::string& s_;
  const std::string& what_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& msg) {
    throw std::runtime_error(what_ + ": malformed JSON at byte " + std::to_string(pos_) + ": " + msg);
  }

  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) pos_++;
  }

  char peek() {
    skip_ws();
    if (pos_ >= s_.size()) fail("unexpected end of input");
    return s_[pos_];
  }

  void expect_literal(const char* lit) {
    size_t n = std::char_traits<char>::length(lit);
    if (s_.compare(pos_, n, lit) != 0) fail(std::string("expected '") + lit + "'");
    pos_ += n;
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting too deep");
    char c = peek();
    Json v;
    if (c == '{') {
      v.kind_ = Json::Kind::Object;
      pos_++;
      if (peek() == '}') { pos_++; return v; }
      while (true) {
        if (peek() != '"') fail("expected a string key");
        std::string key = parse_string();
        if (peek() != ':') fail("expected ':'");
        pos_++;
        if (v.object_.count(key)) fail("duplicate key \"" + key + "\"");
        v.object_.emplace(key, parse_value(depth + 1));
        char d = peek();
        pos_++;
        if (d == '}') break;
        if (d != ',') fail("expected ',' or '}'");
      }
    } else if (c == '[') {
      v.kind_ = Json::Kind::Array;
      pos_++;
      if (peek() == ']') { pos_++; return v; }
      while (true) {
        v.array_.push_back(parse_value(depth + 1));
        char d = peek();
        pos_++;
        if (d == ']') break;
        if (d != ',') fail("expected ',' or ']'");
      }
    } else if (c == '"') {
      v.kind_ = Json::Kind::String;
      v.string_ = parse_string();
    } else if (c == 't') {
      expect_literal("true");
      v.kind_ = Json::Kind::Bool;
      v.bool_ = true;
    } else if (c == 'f') {
      expect_literal("false");
      v.kind_ = Json::Kind::Bool;
    } else if (c == 'n') {
      expect_literal("null");
    } else if (c == 'N') {  // Python's json writes NaN / Infinity; accept them as numbers.
      expect_literal("NaN");
      v.kind_ = Json::Kind::Number;
      v.number_ = NAN;
    } else if (c == 'I') {
      expect_literal("Infinity");
      v.kind_ = Json::Kind::Number;
      v.number_ = INFINITY;
    } else {
      v.kind_ = Json::Kind::Number;
      v.number_ = parse_number();
    }
    return v;
  }

  double parse_number() {
    size_t start = pos_;
    if (s_[pos_] == '-') pos_++;
    if (pos_ < s_.size() && s_[pos_] == 'I') {
      expect_literal("Infinity");
      return -INFINITY;
    }
    bool digits = false;
    while (pos_ < s_.size() && ((s_[pos_] >= '0' && s_[pos_] <= '9') || s_[pos_] == '.' || s_[pos_] == 'e' ||
                                s_[pos_] == 'E' || s_[pos_] == '+' || s_[pos_] == '-')) {
      digits = digits || (s_[pos_] >= '0' && s_[pos_] <= '9');
      pos_++;
    }
    if (!digits) fail("expected a value");
    std::string token = s_.substr(start, pos_ - start);
    char* end = nullptr;
    double value = std::strtod(token.c_str(), &end);
    if (end != token.c_str() + token.size()) fail("bad number '" + token + "'");
    return value;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  uint32_t parse_hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
      char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= h - '0';
      else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
      else fail("bad \\u escape");
    }
    return v;
  }

  std::string parse_string() {
    pos_++;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && pos_ + 6 <= s_.size() && s_[pos_] == '\\' && s_[pos_ + 1] == 'u') {
            pos_ += 2;
            uint32_t lo = parse_hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
    return out;
  }
};

Json Json::parse(const std::string& text, const std::string& what) { return JsonParser(text, what).parse_document(); }

static const Json kNull;

double Json::number() const {
  if (kind_ == Kind::Bool) return bool_ ? 1 : 0;
  if (kind_ != Kind::Number) throw std::runtime_error("expected a number");
  return number_;
}
bool Json::boolean() const {
  if (kind_ != Kind::Bool) throw std::runtime_error("expected true or false");
  return bool_;
}
const std::string& Json::string() const {
  if (kind_ != Kind::String) throw std::runtime_error("expected a string");
  return string_;
}
const std::vector<Json>& Json::array() const {
  if (kind_ != Kind::Array) throw std::runtime_error("expected an array");
  return array_;
}
const std::map<std::string, Json>& Json::object() const {
  if (kind_ != Kind::Object) throw std::runtime_error("expected an object");
  return object_;
}
bool Json::has(const std::string& key) const { return kind_ == Kind::Object && object_.count(key) > 0; }
const Json& Json::operator[](const std::string& key) const {
  if (kind_ != Kind::Object) return kNull;
  auto it = object_.find(key);
  return it == object_.end() ? kNull : it->second;
}

}  // namespace l4
