#!/usr/bin/env node
// latchkey-build STEP.{js,ts} [-o STEP.wasm]: one command from a JavaScript or TypeScript step
// to a Latchkey component.
//
// 1. esbuild bundles the step and everything it imports into one ES module (TypeScript types
//    are stripped, not checked: run `tsc --noEmit` for that). `latchkey-sdk` always resolves
//    to this package's own SDK, so the WIT import names it uses are the ones compiled against.
// 2. componentize-js turns the module into a component of world `latchkey:workflow/workflow`,
//    with its WASI HTTP server, fetch-event and stdio features disabled: Latchkey provides
//    none of them and refuses a component that imports them.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const USAGE = `usage: latchkey-build STEP.js|STEP.ts [-o OUT.wasm] [--only-sdk]

Builds a Latchkey workflow step from a JavaScript or TypeScript module that exports
\`run\` (normally \`export const run = step((input) => ...)\` with step from latchkey-sdk).
The component is written to OUT.wasm (default: STEP.wasm beside the source).

--only-sdk  refuse every import but latchkey-sdk and read no tsconfig.json: the bundle is
            the step and the SDK, nothing from the disk (how a server builds code it did
            not write, such as an agent's script).`;

const here = dirname(fileURLToPath(import.meta.url));
const sdk = resolve(here, '..', 'src', 'index.js');

// The WIT world the SDK is written against: the package's own copy (`npm pack` puts it there),
// or, in a clone of the repository, the repository's.
const WIT_VERSION = '0.2.0';
const wit = [resolve(here, '..', 'wit'), resolve(here, '..', '..', '..', 'wit', WIT_VERSION)].find(
  (dir) => existsSync(join(dir, 'world.wit')),
);

function fail(message) {
  process.stderr.write(`latchkey-build: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  let source;
  let out;
  let onlySdk = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else if (a === '-o' || a === '--out') {
      out = argv[++i];
      if (!out) fail(`${a} needs a file name\n${USAGE}`);
    } else if (a === '--only-sdk') {
      onlySdk = true;
    } else if (a.startsWith('-')) {
      fail(`unknown option ${a}\n${USAGE}`);
    } else if (source) {
      fail(`one step at a time: got ${source} and ${a}\n${USAGE}`);
    } else {
      source = a;
    }
  }
  if (!source) fail(`no step given\n${USAGE}`);
  if (!existsSync(source)) fail(`${source}: no such file`);
  out ??= join(dirname(source), `${basename(source, extname(source))}.wasm`);
  return { source: resolve(source), out: resolve(out), onlySdk };
}

/**
 * The build tools this package depends on. Imported here rather than at the top so that a
 * package whose dependencies were never installed says so instead of printing a stack.
 */
async function tools() {
  try {
    const { build } = await import('esbuild');
    const { componentize } = await import('@bytecodealliance/componentize-js');
    return { build, componentize };
  } catch (e) {
    if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
    const missing = /Cannot find (?:package|module) '([^']+)'/.exec(e.message)?.[1] ?? e.message;
    const root = resolve(here, '..');
    fail(
      `${missing} is not installed: latchkey-sdk's dependencies are missing from ${root}.\n` +
        `In a clone of the repository, run \`npm ci\` in ${root}; in a project of your own, ` +
        '`npm install` the SDK (a packed tarball or its folder) and run `npx latchkey-build`.',
    );
  }
}

/**
 * The esbuild plugin of `--only-sdk`: the entry point, the SDK and the SDK's own WIT imports
 * resolve; anything else (a relative or absolute file, a package, a `with { type: 'text' }`
 * import of a file) is an error, so no file of the building host can be bundled.
 */
const onlySdkPlugin = {
  name: 'latchkey-only-sdk',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind === 'entry-point') return undefined;
      if (args.path === 'latchkey-sdk' || args.path === sdk) return { path: sdk };
      if (args.importer === sdk && args.path.startsWith('latchkey:')) {
        return { path: args.path, external: true };
      }
      return {
        errors: [{ text: `only latchkey-sdk may be imported, not ${JSON.stringify(args.path)}` }],
      };
    });
  },
};

async function main() {
  const { source, out, onlySdk } = parseArgs(process.argv.slice(2));
  if (!wit) fail(`the WIT files of latchkey:workflow@${WIT_VERSION} are missing beside ${here}`);
  const { build, componentize } = await tools();
  const bundled = await build({
    entryPoints: [source],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    metafile: true,
    logLevel: 'silent',
    ...(onlySdk
      ? { plugins: [onlySdkPlugin], tsconfigRaw: {} }
      : { alias: { 'latchkey-sdk': sdk }, external: ['latchkey:*'] }),
  }).catch((e) => fail(`${basename(source)}: ${e.message}`));
  const output = Object.values(bundled.metafile.outputs)[0];
  if (!output.exports.includes('run')) {
    fail(`${source} does not export \`run\`: add \`export const run = step((input) => ...)\``);
  }
  const dir = await mkdtemp(join(tmpdir(), 'latchkey-build-'));
  try {
    const bundle = join(dir, 'step.js');
    await writeFile(bundle, bundled.outputFiles[0].contents);
    const { component } = await componentize({
      sourcePath: bundle,
      witPath: wit,
      worldName: 'workflow',
      disableFeatures: ['http', 'fetch-event', 'stdio'],
    });
    await writeFile(out, component);
    process.stderr.write(
      `latchkey-build: ${out} (${(component.length / 1e6).toFixed(1)} MB)\n`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e) => fail(e?.stack ?? String(e)));
