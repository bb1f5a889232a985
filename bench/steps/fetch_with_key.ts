// The run_script figure's step: one fetch with BENCH_TOKEN injected, as an agent would write
// it. The bench sends this source to `run_script` and registers the same file, built with
// latchkey-build, as a component, to compare the two.
import { step, credential, fetch } from 'latchkey-sdk';

export const run = step(async (input: any) => {
  const r = await fetch(input.url, { headers: { authorization: ['Bearer ', credential('BENCH_TOKEN')] } });
  return { status: r.status };
});
