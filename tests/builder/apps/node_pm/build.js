// The build step: it needs a devDependency, as a bundler or compiler would.
const isNumber = require("is-number");
require("fs").appendFileSync("build-steps.txt", `build:${isNumber(42)}\n`);
