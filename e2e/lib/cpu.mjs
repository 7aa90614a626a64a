// CPU time of a whole process tree, from /proc (Linux): how much of one core a browser used,
// renderer, audio service, GPU and network processes included (any engine's).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux ABI Chromium runs on

/** pid -> parent pid, for every process visible now. */
function parents() {
  const map = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Field 2 (comm) may hold spaces and parentheses: parse after its last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      map.set(Number(name), Number(fields[1]));
    } catch {
      // The process ended while we looked.
    }
  }
  return map;
}

/** The direct children of `pid` now. */
export function childrenOf(pid) {
  return [...parents()].filter(([, ppid]) => ppid === pid).map(([child]) => child);
}

/** `root` and every live descendant. */
export function tree(root) {
  const map = parents();
  const found = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of map) {
      if (found.has(ppid) && !found.has(pid)) {
        found.add(pid);
        grew = true;
      }
    }
  }
  return found;
}

/** utime + stime of a /proc stat line, in ticks (fields 14 and 15). */
function ticksOf(path) {
  const stat = readFileSync(path, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/**
 * What a process is: Chromium's browser, renderer, gpu-process or a utility's service; Firefox's
 * content processes by their kind (tab, socket, rdd, utility); WebKit's by their program
 * (WebKitWebProcess, WebKitNetworkProcess); any other by its program's name.
 */
function processKind(pid) {
  const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\0 ]/); // NUL-separated, or one string where Chromium retitled it
  if (args.includes('-contentproc')) return `content-${args.filter(Boolean).at(-1)}`;
  const type = args.find((a) => a.startsWith('--type='))?.slice(7);
  if (!type) return /chrom/i.test(args[0]) ? 'browser' : path.basename(args[0]);
  const sub = args.find((a) => a.startsWith('--utility-sub-type='))?.slice(19);
  return sub ? sub.replace(/\.mojom\.\w+$/, '') : type; // "audio", "network", ...
}

/**
 * CPU ticks so far per thread of `root`'s tree, keyed "process-kind/thread-name" (threads of
 * one name summed): where a browser's time goes, without a profiler.
 */
function threadTicks(root) {
  const byName = new Map();
  for (const pid of tree(root)) {
    try {
      const kind = processKind(pid);
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        const key = `${kind}/${comm}`;
        byName.set(key, (byName.get(key) ?? 0) + ticksOf(`/proc/${pid}/task/${tid}/stat`));
      }
    } catch {
      // The process or thread ended while we looked: its time after the start is lost.
    }
  }
  return byName;
}

/**
 * Starts measuring `root`'s tree. `stop()` returns the share of one core used meanwhile, in %,
 * in all (`total`) and per thread name (`threads`, largest first, those above 0.5 %).
 */
export function cpuMeter(root) {
  const t0 = performance.now();
  const before = threadTicks(root);
  return {
    stop() {
      const seconds = (performance.now() - t0) / 1000;
      const share = (ticks) => (100 * ticks) / TICKS_PER_SECOND / seconds;
      const threads = [];
      let total = 0;
      for (const [name, ticks] of threadTicks(root)) {
        const used = ticks - (before.get(name) ?? 0);
        total += used;
        if (share(used) >= 0.5) threads.push([name, Math.round(share(used) * 10) / 10]);
      }
      threads.sort((x, y) => y[1] - x[1]);
      return { total: share(total), threads: Object.fromEntries(threads) };
    },
  };
}
