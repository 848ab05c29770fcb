const express = require("express");
const path = require("path");

const port = process.env.PORT || 5006;
const app = express();

app.use(express.static(path.join(__dirname, "public")));
app.get("/", (req, res) => {
  res.send(`<!doctype html><link rel="stylesheet" href="/stylesheets/main.css"><h1>Hello from Express on node ${process.version}</h1>`);
});

app.listen(port, () => console.log(`Listening on ${port}`));
