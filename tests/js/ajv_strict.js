// Compile JSON Schemas with Ajv in strict mode, as a Node.js client of the protocol would.
// Usage: node ajv_strict.js SCHEMA.json...   (NODE_PATH names the node_modules holding ajv)
const Ajv2020 = require("ajv/dist/2020");
const fs = require("fs");
for (const file of process.argv.slice(2)) {
  const ajv = new Ajv2020({strict: true, allErrors: true});
  try {
    ajv.compile(JSON.parse(fs.readFileSync(file, "utf8")));
    console.log(`${file}: compiles`);
  } catch (error) {
    console.log(`${file}: refused: ${error.message}`);
    process.exitCode = 1;
  }
}
