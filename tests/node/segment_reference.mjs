// Segment's own evaluation of mappings and triggers, for the differential tests
// (tests/integrations/sources/test_segment_differential.py): reads a JSON array of cases on stdin,
//   {"mapping": {...}, "event": {...}}  → transform(mapping, event) of @segment/actions-core
//   {"fql": "...", "event": {...}}      → validate(parseFql(fql), event) of @segment/destination-subscriptions
// and prints one JSON array: {"ok": result} / {"error": message} / {"match": bool, "parsed": bool}.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(import.meta.url);
const { transform } = require("@segment/actions-core/mapping-kit");
const { parseFql, validate } = require("@segment/destination-subscriptions");

const cases = JSON.parse(readFileSync(0, "utf8"));
const out = cases.map((c) => {
  if ("fql" in c) {
    const ast = parseFql(c.fql);
    try {
      return { parsed: !ast.error, match: Boolean(validate(ast, c.event)) };
    } catch (error) {
      // A group parseFql left with an undefined child: validate throws, nothing matches.
      return { parsed: false, match: false, error: String((error && error.message) || error) };
    }
  }
  try {
    // transform mutates @replace's options: give it its own copy, as each Segment run has.
    const result = transform(structuredClone(c.mapping), c.event);
    return { ok: result === undefined ? null : result };
  } catch (error) {
    return { error: String((error && error.message) || error) };
  }
});
process.stdout.write(JSON.stringify(out) + "\n");
