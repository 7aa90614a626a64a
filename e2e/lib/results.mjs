// target/e2e/results.json: the figures of every test file, each under its own key, so that one
// file holds a whole run (the files run one after another) and a file run alone updates its part.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './server.mjs';

const file = path.join(repoRoot, 'target/e2e/results.json');

/** Sets `entries` (an object of keys and figures) in results.json, keeping the other keys. */
export function recordResults(entries) {
  mkdirSync(path.dirname(file), { recursive: true });
  const current = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  writeFileSync(file, JSON.stringify({ ...current, ...entries }, null, 2));
}
