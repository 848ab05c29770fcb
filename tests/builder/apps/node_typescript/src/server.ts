// Written in TypeScript, compiled by the app's build script; no type packages needed.
declare const require: (name: string) => any;
declare const process: { env: Record<string, string | undefined> };

const http = require("http");

function greeting(language: string): string {
  return `Hello from ${language}, compiled at build time`;
}

http.createServer((_req: unknown, res: { end(body: string): void }) => res.end(greeting("TypeScript"))).listen(Number(process.env.PORT));
