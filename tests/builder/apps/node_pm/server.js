// A small web app that answers with what its dependencies say, and which build steps ran.
const http = require("http");
const fs = require("fs");
const ms = require("ms");

function present(name) {
  try {
    require.resolve(name);
    return "present";
  } catch (err) {
    return "pruned";
  }
}

http
  .createServer((req, res) => {
    const steps = fs.existsSync("build-steps.txt") ? fs.readFileSync("build-steps.txt", "utf8").trim().split("\n").join(",") : "";
    res.end(`node ${process.versions.node.split(".")[0]}; two days is ${ms("2 days")} ms; is-number ${present("is-number")}; steps ${steps}`);
  })
  .listen(process.env.PORT);
