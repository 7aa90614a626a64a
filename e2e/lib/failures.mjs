// What a failed test leaves behind for whoever reads its log: each browser's console and the
// server's log (the API key masked).

/**
 * `guarded(fn)` runs `fn`; when it fails, `report()` prints the last of each of `people`'s
 * consoles and of the server's log (`server()` returns it, once started) before the failure is
 * rethrown.
 */
export function failureReporting(people, server) {
  const report = () => {
    for (const p of people) console.log(`--- console of ${p.name}\n${p.console.slice(-40).join('\n')}`);
    const s = server();
    if (s) console.log(`--- server log\n${s.log().replaceAll(s.apikey, '<APIKEY>').slice(-4000)}`);
  };
  const guarded = async (fn) => {
    try {
      await fn();
    } catch (e) {
      report();
      throw e;
    }
  };
  return { report, guarded };
}
