"""Runs argv on a new pty and drains its output as fast as it can: `pty-reader.py KEEP ARGV...`.

The output goes to the file KEEP (or nowhere for "-"). Prints {"status", "bytes"} as JSON. For the
pty rows of bench/masking.mjs: a terminal as a person's would be, read by a program that is never
the bottleneck."""
import json, os, pty, sys

keep, argv = sys.argv[1], sys.argv[2:]
pid, fd = pty.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
out = open(keep, 'wb') if keep != '-' else None
total = 0
while True:
    try:
        chunk = os.read(fd, 1 << 16)
    except OSError:  # EIO: no process holds the slave any more
        break
    if not chunk:
        break
    total += len(chunk)
    if out is not None:
        out.write(chunk)
_, status = os.waitpid(pid, 0)
if out is not None:
    out.close()
print(json.dumps({'status': os.waitstatus_to_exitcode(status), 'bytes': total}))
