// The asset build: what a bundler would do, reduced to writing one file.
require("fs").mkdirSync("static", { recursive: true });
require("fs").writeFileSync("static/bundle.txt", `bundled by node ${process.version}\n`);
