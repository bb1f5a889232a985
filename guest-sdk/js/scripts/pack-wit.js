#!/usr/bin/env node
// `npm pack` / `npm publish` hooks: the package ships its own copy of the WIT world it is
// written against, since npm leaves symlinks out of a package. `prepack` copies the
// repository's `wit/<version>/` into `wit/` (ignored by git); `postpack` removes it again, so
// that a clone always builds against the repository's WIT.
import { cpSync, existsSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const target = join(pkg, 'wit');
const source = resolve(pkg, '..', '..', 'wit', '0.2.0');

rmSync(target, { recursive: true, force: true });
if (process.argv[2] === '--clean') process.exit(0);
if (!existsSync(join(source, 'world.wit'))) {
  process.stderr.write(`pack-wit: ${source} has no world.wit: pack from a clone of the repository\n`);
  process.exit(1);
}
cpSync(source, target, { recursive: true, dereference: true });
