// Random inputs that a failing run can repeat: a seed from LINE_E2E_SEED or the clock, printed.

/** A generator of floats in [0, 1) (mulberry32), named `what` in the line it prints. */
export function seededRandom(what) {
  const seed = Number(process.env.LINE_E2E_SEED ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
  console.log(`${what}: seed ${seed} (LINE_E2E_SEED=${seed} repeats this run)`);
  let state = seed;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  next.seed = seed;
  return next;
}
