// The one Node binding of the engine: thin wrappers that move arguments in and results out.
// Everything slow runs in a Napi::AsyncWorker off the JS thread; every C++ exception becomes a
// rejected promise with the engine's message, so no input can take the Node process down.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <utility>

#include "../src/kernels/kernels.h"
#include "../src/kernels/quantized.h"
#include "../src/llama4/save.h"
#include "../src/llama4/text_model.h"
#include "../src/thread_pool.h"

namespace {

using l4::ForwardRequest;
using l4::ForwardResult;
using l4::ImageRequest;
using l4::ImageResult;
using l4::KVCache;
using l4::TextModel;

using CancelToken = std::shared_ptr<std::atomic<bool>>;

// A promise-returning worker; subclasses fill Run() and Resolve().
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Resolve(Napi::Env env) = 0;

  void Execute() override {
    try {
      Run();
    } catch (const l4::CancelledError&) {
      cancelled_ = true;
      SetError("cancelled: the operation was interrupted");
    } catch (const std::bad_alloc&) {
      SetError("out of memory");
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(Resolve(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    if (cancelled_) {
      err.Set("name", Napi::String::New(Env(), "AbortError"));
      err.Set("code", Napi::String::New(Env(), "ABORT_ERR"));
    }
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  bool cancelled_ = false;
};

Napi::Float32Array to_float32_array(Napi::Env env, std::vector<float>&& data) {
  auto* owned = new std::vector<float>(std::move(data));
  auto buffer = Napi::ArrayBuffer::New(env, owned->data(), owned->size() * sizeof(float),
                                       [](Napi::Env, void*, std::vector<float>* v) { delete v; }, owned);
  return Napi::Float32Array::New(env, owned->size(), buffer, 0);
}

Napi::Int32Array to_int32_array(Napi::Env env, const std::vector<int32_t>& data) {
  Napi::Int32Array a = Napi::Int32Array::New(env, data.size());
  std::copy(data.begin(), data.end(), a.Data());
  return a;
}

std::vector<float> float32_vector(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<int8_t> int8_vector(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int8_array)
    throw Napi::TypeError::New(v.Env(), std::string(name) + " must be an Int8Array");
  auto a = v.As<Napi::Int8Array>();
  return std::vector<int8_t>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<int32_t> int32_vector(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(v.Env(), std::string(name) + " must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

class CacheWrap : public Napi::ObjectWrap<CacheWrap> {
 public:
  static Napi::FunctionReference constructor;
  static void Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeKVCache",
                                   {InstanceAccessor<&CacheWrap::Length>("length"),
                                    InstanceAccessor<&CacheWrap::Batch>("batch"),
                                    InstanceAccessor<&CacheWrap::Bytes>("bytes"),
                                    InstanceMethod<&CacheWrap::LayerBytes>("layerBytes")});
    constructor = Napi::Persistent(f);
  }
  explicit CacheWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CacheWrap>(info) {}
  std::shared_ptr<KVCache> cache;
  const TextModel* owner = nullptr;

 private:
  Napi::Value Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(cache->length())); }
  Napi::Value Batch(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(cache->batch())); }
  Napi::Value Bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(cache->bytes())); }
  Napi::Value LayerBytes(const Napi::CallbackInfo& info) {
    auto bytes = cache->layer_bytes();
    Napi::Array out = Napi::Array::New(info.Env(), bytes.size());
    for (size_t i = 0; i < bytes.size(); i++) out.Set(uint32_t(i), double(bytes[i]));
    return out;
  }
};
Napi::FunctionReference CacheWrap::constructor;

// In-flight calls of one model, so cancel() reaches each of them (and none started later).
struct CancelRegistry {
  std::mutex mutex;
  std::set<CancelToken> active;
  CancelToken add() {
    auto t = std::make_shared<std::atomic<bool>>(false);
    std::lock_guard<std::mutex> l(mutex);
    active.insert(t);
    return t;
  }
  void remove(const CancelToken& t) {
    std::lock_guard<std::mutex> l(mutex);
    active.erase(t);
  }
  void cancel_all() {
    std::lock_guard<std::mutex> l(mutex);
    for (auto& t : active) t->store(true);
  }
};

class ForwardWorker : public PromiseWorker {
 public:
  ForwardWorker(Napi::Env env, std::shared_ptr<TextModel> model, std::shared_ptr<CancelRegistry> registry,
                ForwardRequest req, std::shared_ptr<KVCache> cache, Napi::Object cache_object)
      : PromiseWorker(env), model_(std::move(model)), registry_(std::move(registry)), req_(std::move(req)),
        cache_(std::move(cache)), token_(registry_->add()) {
    req_.cache = cache_.get();
    if (!cache_object.IsEmpty()) cache_ref_ = Napi::Persistent(cache_object);  // keep it alive while running
  }
  ~ForwardWorker() override { registry_->remove(token_); }

 protected:
  void Run() override { result_ = model_->forward(req_, *token_); }
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("logits", to_float32_array(env, std::move(result_.logits)));
    out.Set("kept", Napi::Number::New(env, double(result_.kept)));
    if (req_.output_hidden_states) out.Set("hiddenStates", to_float32_array(env, std::move(result_.hidden_states)));
    out.Set("scratchPeakBytes", Napi::Number::New(env, double(result_.scratch_peak_bytes)));
    if (!req_.attention_layers.empty()) out.Set("attentions", to_float32_array(env, std::move(result_.attentions)));
    if (req_.output_router_logits) {
      out.Set("routerLogits", to_float32_array(env, std::move(result_.router_logits)));
      out.Set("routerExperts", to_int32_array(env, result_.router_experts));
      out.Set("routerScores", to_float32_array(env, std::move(result_.router_scores)));
      Napi::Array layers = Napi::Array::New(env, result_.moe_layers.size());
      for (size_t i = 0; i < result_.moe_layers.size(); i++) layers.Set(uint32_t(i), result_.moe_layers[i]);
      out.Set("moeLayers", layers);
    }
    return out;
  }

 private:
  std::shared_ptr<TextModel> model_;
  std::shared_ptr<CancelRegistry> registry_;
  ForwardRequest req_;
  std::shared_ptr<KVCache> cache_;
  CancelToken token_;
  Napi::ObjectReference cache_ref_;
  ForwardResult result_;
};

class EncodeImagesWorker : public PromiseWorker {
 public:
  EncodeImagesWorker(Napi::Env env, std::shared_ptr<TextModel> model, std::shared_ptr<CancelRegistry> registry,
                     ImageRequest req)
      : PromiseWorker(env), model_(std::move(model)), registry_(std::move(registry)), req_(std::move(req)),
        token_(registry_->add()) {}
  ~EncodeImagesWorker() override { registry_->remove(token_); }

 protected:
  void Run() override { result_ = model_->encode_images(req_, *token_); }
  Napi::Value Resolve(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("imageFeatures", to_float32_array(env, std::move(result_.image_features)));
    out.Set("tokensPerTile", Napi::Number::New(env, double(result_.tokens_per_tile)));
    if (req_.output_vision_features) out.Set("visionFeatures", to_float32_array(env, std::move(result_.vision_features)));
    if (req_.output_hidden_states) out.Set("hiddenStates", to_float32_array(env, std::move(result_.hidden_states)));
    return out;
  }

 private:
  std::shared_ptr<TextModel> model_;
  std::shared_ptr<CancelRegistry> registry_;
  ImageRequest req_;
  CancelToken token_;
  ImageResult result_;
};

class SaveWorker : public PromiseWorker {
 public:
  SaveWorker(Napi::Env env, std::shared_ptr<TextModel> model, std::string path)
      : PromiseWorker(env), model_(std::move(model)), path_(std::move(path)) {}

 protected:
  void Run() override { config_ = l4::save_compressed_tensors(*model_, path_); }
  Napi::Value Resolve(Napi::Env env) override { return Napi::String::New(env, config_); }

 private:
  std::shared_ptr<TextModel> model_;
  std::string path_, config_;
};

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::FunctionReference constructor;
  static void Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeModel",
                                   {InstanceMethod<&ModelWrap::Forward>("forward"),
                                    InstanceMethod<&ModelWrap::EncodeImages>("encodeImages"),
                                    InstanceMethod<&ModelWrap::CreateCache>("createCache"),
                                    InstanceMethod<&ModelWrap::Cancel>("cancel"),
                                    InstanceMethod<&ModelWrap::Config>("config"),
                                    InstanceMethod<&ModelWrap::Info>("info"),
                                    InstanceMethod<&ModelWrap::WeightStats>("weightStats"),
                                    InstanceMethod<&ModelWrap::SaveQuantized>("saveQuantized")});
    constructor = Napi::Persistent(f);
  }
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}
  std::shared_ptr<TextModel> model;
  std::shared_ptr<CancelRegistry> registry = std::make_shared<CancelRegistry>();

 private:
  // forward({ inputIds: Int32Array, batch, seqLen, imageFeatures?, attentionMask?, positionIds?, cache?, outputHiddenStates?,
  //           outputRouterLogits?, logitsToKeep? }) -> Promise<{ logits, kept, hiddenStates?, routerLogits?, moeLayers? }>
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "forward expects an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    ForwardRequest req;
    req.input_ids = int32_vector(o.Get("inputIds"), "inputIds");
    req.batch = o.Get("batch").ToNumber().Int64Value();
    req.seq_len = o.Get("seqLen").ToNumber().Int64Value();
    if (o.Has("imageFeatures") && !o.Get("imageFeatures").IsUndefined())
      req.image_features = float32_vector(o.Get("imageFeatures"), "imageFeatures");
    if (o.Has("attentionMask") && !o.Get("attentionMask").IsUndefined())
      req.attention_mask = int32_vector(o.Get("attentionMask"), "attentionMask");
    if (o.Has("positionIds") && !o.Get("positionIds").IsUndefined())
      req.position_ids = int32_vector(o.Get("positionIds"), "positionIds");
    req.output_hidden_states = o.Get("outputHiddenStates").ToBoolean();
    req.output_router_logits = o.Get("outputRouterLogits").ToBoolean();
    req.eager_attention = o.Get("eagerAttention").ToBoolean();
    if (o.Has("attentionLayers") && !o.Get("attentionLayers").IsUndefined())
      req.attention_layers = int32_vector(o.Get("attentionLayers"), "attentionLayers");
    if (o.Has("expertOverride") && !o.Get("expertOverride").IsUndefined())
      req.expert_override = int8_vector(o.Get("expertOverride"), "expertOverride");
    if (o.Has("logitsToKeep") && !o.Get("logitsToKeep").IsUndefined())
      req.logits_to_keep = o.Get("logitsToKeep").ToNumber().Int64Value();
    std::shared_ptr<KVCache> cache;
    Napi::Object cache_object;
    Napi::Value c = o.Get("cache");
    if (!c.IsUndefined() && !c.IsNull()) {
      if (!c.IsObject() || !c.As<Napi::Object>().InstanceOf(CacheWrap::constructor.Value()))
        throw Napi::TypeError::New(env, "cache must come from this model's createCache()");
      CacheWrap* wrap = CacheWrap::Unwrap(c.As<Napi::Object>());
      if (wrap->owner != model.get()) throw Napi::TypeError::New(env, "cache was created by another model");
      cache = wrap->cache;
      cache_object = c.As<Napi::Object>();
    }
    auto* worker = new ForwardWorker(env, model, registry, std::move(req), cache, cache_object);
    Napi::Promise p = worker->Promise();
    worker->Queue();
    return p;
  }

  // encodeImages({ pixelValues: Float32Array, tiles, height, width, outputVisionFeatures?, outputHiddenStates? })
  //   -> Promise<{ imageFeatures, tokensPerTile, visionFeatures?, hiddenStates? }>
  Napi::Value EncodeImages(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "encodeImages expects an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    ImageRequest req;
    req.pixel_values = float32_vector(o.Get("pixelValues"), "pixelValues");
    req.tiles = o.Get("tiles").ToNumber().Int64Value();
    req.height = o.Get("height").ToNumber().Int64Value();
    req.width = o.Get("width").ToNumber().Int64Value();
    req.output_vision_features = o.Get("outputVisionFeatures").ToBoolean();
    req.output_hidden_states = o.Get("outputHiddenStates").ToBoolean();
    auto* worker = new EncodeImagesWorker(env, model, registry, std::move(req));
    Napi::Promise p = worker->Promise();
    worker->Queue();
    return p;
  }

  Napi::Value CreateCache(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const double asked = info.Length() > 0 ? info[0].ToNumber().DoubleValue() : 1;
    // The SDK's new_cache checks the batch against memory first; this bound keeps the size arithmetic safe.
    if (!(asked >= 1 && asked <= double(1 << 24)) || asked != std::floor(asked))
      throw Napi::RangeError::New(env, "new_cache: batch size must be an integer from 1 to 16777216, got " +
                                           info[0].ToString().Utf8Value());
    const int64_t batch = int64_t(asked);
    Napi::Object obj = CacheWrap::constructor.New({});
    CacheWrap* wrap = CacheWrap::Unwrap(obj);
    // Second argument: the cache's element type by name (generate's cache_implementation "quantized" asks for "int8");
    // the model's kv_cache_dtype when absent.
    const l4::DType dtype = info.Length() > 1 && info[1].IsString() ? l4::kv_cache_dtype(info[1].As<Napi::String>().Utf8Value())
                                                                 : model->kv_dtype();
    wrap->cache = std::make_shared<KVCache>(model->config(), batch, dtype);
    wrap->owner = model.get();
    return obj;
  }

  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    registry->cancel_all();
    return info.Env().Undefined();
  }

  Napi::Value Config(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), model->config().to_json()); }

  // saveQuantized(path) -> Promise<quantization_config JSON>: writes model.safetensors as a compressed-tensors checkpoint.
  Napi::Value SaveQuantized(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "saveQuantized expects a file path");
    auto* worker = new SaveWorker(info.Env(), model, info[0].As<Napi::String>().Utf8Value());
    Napi::Promise p = worker->Promise();
    worker->Queue();
    return p;
  }

  Napi::Value WeightStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto stats = model->weight_stats();
    Napi::Array out = Napi::Array::New(env, stats.size());
    for (size_t i = 0; i < stats.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("module", stats[i].module);
      o.Set("dtype", stats[i].dtype);
      o.Set("bytes", Napi::Number::New(env, double(stats[i].bytes)));
      out.Set(uint32_t(i), o);
    }
    return out;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("layout", model->weights().layout);
    o.Set("mappedBytes", Napi::Number::New(env, double(model->mapped_weight_bytes())));
    o.Set("convertedBytes", Napi::Number::New(env, double(model->converted_weight_bytes())));
    o.Set("vision", VisionInfo(env));
    return o;
  }

  // What the SDK needs to lay out image tokens; null for a text-only checkpoint.
  Napi::Value VisionInfo(Napi::Env env) {
    const l4::VisionConfig& v = model->vision_config();
    if (!v.present) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("usable", Napi::Boolean::New(env, v.usable()));
    if (!v.usable()) o.Set("reason", v.problem);
    o.Set("imageTokenId", Napi::Number::New(env, double(v.image_token_id)));
    o.Set("imageSize", Napi::Number::New(env, double(v.image_size)));
    o.Set("patchSize", Napi::Number::New(env, double(v.patch_size)));
    o.Set("numChannels", Napi::Number::New(env, double(v.num_channels)));
    o.Set("pixelShuffleRatio", Napi::Number::New(env, v.pixel_shuffle_ratio));
    if (v.usable()) o.Set("tokensPerTile", Napi::Number::New(env, double(v.tokens_per_tile)));
    return o;
  }
};
Napi::FunctionReference ModelWrap::constructor;

class LoadWorker : public PromiseWorker {
 public:
  // `on_layer_loaded` (may be empty): called on the JS thread with (bytes loaded, bytes in all) after each layer.
  LoadWorker(Napi::Env env, std::string dir, l4::LoadOptions options, Napi::Function on_layer_loaded)
      : PromiseWorker(env), dir_(std::move(dir)), options_(std::move(options)), reports_(!on_layer_loaded.IsEmpty()) {
    if (reports_) progress_ = Napi::ThreadSafeFunction::New(env, on_layer_loaded, "llama4-ts load progress", 0, 1);
  }

 protected:
  void Run() override {
    if (reports_)
      options_.layer_loaded = [this](size_t done, size_t total) {
        auto* counts = new std::pair<double, double>(double(done), double(total));
        const napi_status queued = progress_.BlockingCall(counts, [](Napi::Env env, Napi::Function fn, std::pair<double, double>* c) {
          try {
            fn.Call({Napi::Number::New(env, c->first), Napi::Number::New(env, c->second)});
          } catch (const Napi::Error&) {  // a progress display that fails must not fail the load
          }
          delete c;
        });
        if (queued != napi_ok) delete counts;
      };
    struct Release {  // however Run ends, so the function does not keep the event loop alive
      LoadWorker* w;
      ~Release() {
        if (w->reports_) w->progress_.Release();
      }
    } release{this};
    model_ = std::make_shared<TextModel>(dir_, options_);
  }
  Napi::Value Resolve(Napi::Env) override {
    Napi::Object obj = ModelWrap::constructor.New({});
    ModelWrap::Unwrap(obj)->model = model_;
    return obj;
  }

 private:
  std::string dir_;
  l4::LoadOptions options_;
  bool reports_;
  Napi::ThreadSafeFunction progress_;
  std::shared_ptr<TextModel> model_;
};

// loadModel(dir, { dtype, fbgemmFp8, kvCacheDtype, useMmap, onLayerLoaded }) -> Promise<NativeModel>; fbgemmFp8:
// FbgemmFp8Config's fields as JSON; kvCacheDtype: "float32" (default), "bfloat16" or "int8"; useMmap: keep float
// weights in the mapped checkpoint (default false); onLayerLoaded(bytesLoaded, bytesTotal).
Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "loadModel expects a directory path");
  l4::LoadOptions options;
  Napi::Function on_layer_loaded;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value d = info[1].As<Napi::Object>().Get("dtype");
    if (d.IsString()) options.dtype = d.As<Napi::String>().Utf8Value();
    Napi::Value f = info[1].As<Napi::Object>().Get("fbgemmFp8");
    if (f.IsString()) options.fbgemm_fp8 = f.As<Napi::String>().Utf8Value();
    Napi::Value kv = info[1].As<Napi::Object>().Get("kvCacheDtype");
    if (kv.IsString()) options.kv_dtype = kv.As<Napi::String>().Utf8Value();
    Napi::Value mmap = info[1].As<Napi::Object>().Get("useMmap");
    if (mmap.IsBoolean()) options.use_mmap = mmap.As<Napi::Boolean>().Value();
    Napi::Value progress = info[1].As<Napi::Object>().Get("onLayerLoaded");
    if (progress.IsFunction()) on_layer_loaded = progress.As<Napi::Function>();
  }
  auto* worker = new LoadWorker(env, info[0].As<Napi::String>().Utf8Value(), std::move(options), on_layer_loaded);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  l4::set_num_threads(info.Length() > 0 ? int(info[0].ToNumber().Int32Value()) : 0);
  return info.Env().Undefined();
}
Napi::Value NumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), l4::num_threads()); }
Napi::Value Simd(const Napi::CallbackInfo& info) {
  try {
    return Napi::String::New(info.Env(), l4::simd_name());
  } catch (const std::exception& e) {  // a bad LLAMA4_TS_KERNELS
    throw Napi::Error::New(info.Env(), e.what());
  }
}
Napi::Value SetMatmulPrecision(const Napi::CallbackInfo& info) {
  try {
    l4::set_matmul_precision(info.Length() > 0 ? info[0].ToString().Utf8Value() : "");
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return info.Env().Undefined();
}
Napi::Value MatmulPrecision(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), l4::matmul_precision());
}
Napi::Value KernelSets(const Napi::CallbackInfo& info) {
  const std::vector<std::string> names = l4::available_kernels();
  Napi::Array out = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); i++) out.Set(uint32_t(i), names[i]);
  return out;
}

// matmul({ kernels, x, tokens, weight, dtype, rows, cols, inOut, quantize, attentionScores }): one product on a named
// kernel set, so tests can hold every set the CPU has to the same reference. attentionScores: the same product
// ([out, in] weights: keys [n, D], tokens: queries) on attention's scores kernel. With quantize ("q8" / "q4", or "fp8": e4m3 with a
// scale per output row, activations left in f32) the weight is quantized first and the result is { y, weight, x }: the output and the dequantized weight [out, in] and
// activations [tokens, in] it was computed from. Synchronous: for small test sizes only.
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "matmul expects an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  const std::string kernels = o.Get("kernels").ToString().Utf8Value(), dtype_name = o.Get("dtype").ToString().Utf8Value();
  const int64_t tokens = o.Get("tokens").ToNumber().Int64Value(), rows = o.Get("rows").ToNumber().Int64Value(),
                cols = o.Get("cols").ToNumber().Int64Value();
  const bool in_out = o.Get("inOut").ToBoolean().Value(), scores = o.Has("attentionScores") && o.Get("attentionScores").ToBoolean().Value();
  const std::string quantize = o.Has("quantize") && !o.Get("quantize").IsUndefined() ? o.Get("quantize").ToString().Utf8Value() : "";
  if (!quantize.empty() && quantize != "q8" && quantize != "q4" && quantize != "fp8")
    throw Napi::TypeError::New(env, "matmul: quantize must be \"q8\", \"q4\" or \"fp8\", got " + quantize);
  if (scores && (in_out || !quantize.empty()))
    throw Napi::TypeError::New(env, "matmul: attentionScores takes keys [n, D] (inOut false), unquantized");
  l4::DType dtype;
  if (!l4::dtype_from_name(dtype_name, &dtype) ||
      (dtype != l4::DType::F32 && dtype != l4::DType::BF16 && dtype != l4::DType::F16))
    throw Napi::TypeError::New(env, "matmul: dtype must be F32, BF16 or F16, got " + dtype_name);
  const std::vector<float> x = float32_vector(o.Get("x"), "matmul: x");
  Napi::Value wv = o.Get("weight");
  if (!wv.IsTypedArray()) throw Napi::TypeError::New(env, "matmul: weight must be a typed array");
  Napi::TypedArray w = wv.As<Napi::TypedArray>();
  const int64_t in = in_out ? rows : cols, out = in_out ? cols : rows;
  if (tokens < 1 || rows < 1 || cols < 1 || rows > (int64_t(1) << 24) || cols > (int64_t(1) << 24) ||
      tokens > (int64_t(1) << 24) || int64_t(x.size()) != tokens * in ||
      int64_t(w.ByteLength()) != rows * cols * int64_t(l4::dtype_size(dtype)))
    throw Napi::RangeError::New(env, "matmul: x must be [tokens, in] and weight [rows, cols] of dtype " + dtype_name);
  l4::Matrix m{dtype, static_cast<const uint8_t*>(w.ArrayBuffer().Data()) + w.ByteOffset(), rows, cols};
  m.in_out = in_out;
  std::vector<float> y(tokens * out);
  l4::WeightBytes storage;
  try {
    if (!quantize.empty())
      m = l4::quantize_matrix(m, quantize == "q8" ? l4::DType::Q8 : quantize == "q4" ? l4::DType::Q4 : l4::DType::F8_E4M3, storage);
    if (scores) l4::attention_scores_on(kernels, x.data(), tokens, m, y.data());
    else l4::matmul_on(kernels, x.data(), tokens, m, y.data());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  if (quantize.empty()) return to_float32_array(env, std::move(y));
  std::vector<float> weight(out * in), activations(tokens * in);
  l4::to_f32(m, weight.data());
  if (m.dtype == l4::DType::F8_E4M3) {
    activations = x;  // FP8 weights alone: the activations stay f32
  } else {
    l4::QuantizedActivations xq;
    l4::quantize_activations(x.data(), in, tokens, in, l4::quant_offset(m.dtype), xq);
    for (int64_t t = 0; t < tokens; t++)
      for (int64_t k = 0; k < in; k++)
        activations[t * in + k] = float(xq.q(t)[k]) * xq.scales(t)[k / l4::kQuantBlock];
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("y", to_float32_array(env, std::move(y)));
  result.Set("weight", to_float32_array(env, std::move(weight)));
  result.Set("x", to_float32_array(env, std::move(activations)));
  return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  ModelWrap::Init(env);
  CacheWrap::Init(env);
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("numThreads", Napi::Function::New(env, NumThreads));
  exports.Set("simd", Napi::Function::New(env, Simd));
  exports.Set("kernelSets", Napi::Function::New(env, KernelSets));
  exports.Set("setMatmulPrecision", Napi::Function::New(env, SetMatmulPrecision));
  exports.Set("matmulPrecision", Napi::Function::New(env, MatmulPrecision));
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  return exports;
}

}  // namespace

NODE_API_MODULE(llama4_native, Init)
