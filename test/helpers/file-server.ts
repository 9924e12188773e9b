// A static file server on 127.0.0.1 standing in for the web: GET /<name> answers the bytes given
// for that name (404 otherwise), so tests load images "from a URL" without the internet.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export class FileServer {
  private server: Server | null = null;
  /** Paths requested so far, in order. */
  readonly requests: string[] = [];

  constructor(private readonly files: Record<string, Buffer>) {}

  /** Starts listening; returns the base URL (no trailing slash). */
  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const name = decodeURIComponent(new URL(req.url ?? "/", "http://127.0.0.1").pathname.slice(1));
      this.requests.push(name);
      const body = this.files[name];
      if (body === undefined) {
        res.writeHead(404, { "Content-Type": "text/plain" }).end(`${name}: not found`);
        return;
      }
      res.writeHead(200, { "Content-Length": body.length, "Content-Type": "application/octet-stream" }).end(body);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    this.server = null;
  }
}
