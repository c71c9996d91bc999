import { runDifferential } from './differential';

// Our client against Node's own parser (llhttp) on a few hundred seeded responses, valid and
// mutated (see response-gen.ts): it never accepts an answer with other bytes than llhttp reads
// from it, never accepts one llhttp refuses with other bytes than the ones meant, and reads every
// valid one as meant. The soak (differential.soak.ts) runs thousands.

test('differential: our client against llhttp, 400 cases of seed 20260401', async () => {
  const { failures, stats } = await runDifferential(20260401, 400);
  if (failures.length) console.log(failures.slice(0, 10).join('\n\n'));
  expect(failures).toEqual([]);
  // The run exercised both sides of the line.
  expect(stats.valid).toBeGreaterThan(30);
  expect(stats.bothRefuse + stats.onlyOursRefuses).toBeGreaterThan(100);
  console.log(`differential: ${JSON.stringify(stats)}`);
}, 60_000);
