const http = require("http");
const shout = require("shout");
http.createServer((req, res) => res.end(shout("hello from a node dependency"))).listen(Number(process.env.PORT), "127.0.0.1");
