const http = require("http");
http
  .createServer((req, res) => res.end(`Hello from node ${process.version}`))
  .listen(Number(process.env.PORT), "127.0.0.1");
