// Fallback peak-RSS probe, used only when /usr/bin/time is missing: preloaded with
// `node --import`, it writes this process's peak RSS (KiB, getrusage ru_maxrss) to
// $BENCH_RSS_OUT when the process exits. Runs that use it are not timed.
import { writeFileSync } from 'node:fs';

const out = process.env.BENCH_RSS_OUT;
if (out !== undefined && out !== '') {
  process.on('exit', () => {
    writeFileSync(out, `${process.resourceUsage().maxRSS}\n`);
  });
}
