/**
 * Runs a program on a real pseudo-terminal (python3's pty module) as its controlling terminal, and
 * types into it: for prompts, Ctrl-C, and programs that must keep their tty.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Workspace } from './cli.js';

/**
 * Runs argv on a new pty as the child's controlling terminal (stdin, stdout and stderr), of the
 * window size `size`. Each step waits until `expect` has appeared in the output after the previous
 * step's match, then types `send` or resizes the window to `resize` (the kernel then signals
 * SIGWINCH to the foreground group). Prints a JSON report: exit status, all output, the steps
 * never reached.
 */
const PTY_DRIVER = String.raw`
import fcntl, json, os, pty, select, signal, struct, sys, termios, time

spec = json.load(open(sys.argv[1]))
pid, fd = pty.fork()
if pid == 0:
    try:
        os.chdir(spec['cwd'])
        os.execve(spec['argv'][0], spec['argv'], spec['env'])
    finally:
        os._exit(127)

def resize(rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))

resize(*spec['size'])

out = b''
mark = 0
steps = list(spec['steps'])
deadline = time.monotonic() + spec['timeout']
timed_out = False
open_ = True
while open_:
    if steps:
        wanted = steps[0]['expect'].encode()
        at = out.find(wanted, mark)
        if at >= 0:
            mark = at + len(wanted)
            step = steps.pop(0)
            if 'resize' in step:
                resize(*step['resize'])
            else:
                os.write(fd, step['send'].encode('latin-1'))
            continue
    left = deadline - time.monotonic()
    if left <= 0:
        timed_out = True
        os.kill(pid, signal.SIGKILL)
        break
    ready, _, _ = select.select([fd], [], [], min(left, 0.25))
    if not ready:
        continue
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        chunk = b''
    if chunk:
        out += chunk
    else:
        open_ = False

_, status = os.waitpid(pid, 0)
json.dump({
    'status': os.waitstatus_to_exitcode(status),
    'output': out.decode('utf-8', 'replace'),
    'pending': [s['expect'] for s in steps],
    'timedOut': timed_out,
}, sys.stdout)
`;

export type Step = { expect: string; send: string } | { expect: string; resize: [rows: number, cols: number] };

export interface PtyResult {
  status: number;
  /** Everything the terminal showed, \r\n turned into \n. */
  output: string;
  /** Prompts that never appeared. */
  pending: string[];
  timedOut: boolean;
}

/** Runs `argv` on a new pty (24 rows, 80 columns) with the workspace's environment, typing `steps`; `seconds` it may take. */
export function ptyRun(ws: Workspace, argv: string[], steps: Step[], extraEnv: NodeJS.ProcessEnv = {}, seconds = 30): PtyResult {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...ws.env, TERM: 'dumb', ...extraEnv })) if (v !== undefined) env[k] = v;
  const specFile = path.join(ws.root, `pty-${process.hrtime.bigint()}.json`);
  const driver = path.join(ws.root, 'pty-driver.py');
  fs.writeFileSync(driver, PTY_DRIVER);
  fs.writeFileSync(specFile, JSON.stringify({ argv, env, cwd: ws.project, steps, timeout: seconds, size: [24, 80] }));
  const run = spawnSync('python3', [driver, specFile], { encoding: 'utf8', timeout: (seconds + 30) * 1000, maxBuffer: 64 * 1024 * 1024 });
  if (run.status !== 0) throw new Error(`pty driver failed (${run.status}): ${run.stderr}${run.error ?? ''}`);
  const report = JSON.parse(run.stdout) as PtyResult;
  return { ...report, output: report.output.replace(/\r\n/g, '\n') };
}

