import { runDifferential } from './differential';

// The differential test at length (`npm run test:soak`): thousands of responses of several seeds;
// DIFFERENTIAL_SEED and DIFFERENTIAL_CASES pick others (a failure names its case and seed).

const seeds = process.env.DIFFERENTIAL_SEED ? [Number(process.env.DIFFERENTIAL_SEED)] : [1, 20260401, 777];
const count = Number(process.env.DIFFERENTIAL_CASES ?? 2000);

test.each(seeds)(`differential soak: our client against llhttp, ${count} cases of seed %i`, async (seed) => {
  const { failures, stats } = await runDifferential(seed, count);
  console.log(`differential soak, seed ${seed}: ${JSON.stringify(stats)}`);
  if (failures.length) console.log(failures.slice(0, 20).join('\n\n'));
  expect(failures).toEqual([]);
});
