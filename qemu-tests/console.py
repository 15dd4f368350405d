#!/usr/bin/env python3
"""Serial-console driver for the whole-boot tests: connects to QEMU's console socket (retrying
until it exists), appends everything to LOG, and answers prompts: for each REGEX=REPLY argument,
the first time REGEX matches the console text after the previous answer, it types REPLY + CR.
Also writes LOG.times: "NAME SECONDS" when each milestone first shows, and LOG.typed: one line
per reply typed, both counted from the connection (QEMU waits for it before starting the guest: server=on,wait=on).
    console.py SOCK LOG [REGEX=REPLY ...]"""
import re, socket, sys, time

sock_path, log_path, rules = sys.argv[1], sys.argv[2], sys.argv[3:]
pending = [tuple(r.split('=', 1)) for r in rules]
s = None
for _ in range(600):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        break
    except OSError:
        s.close(); s = None; time.sleep(0.1)
if s is None:
    sys.exit('console.py: no console socket ' + sock_path)
t0 = time.monotonic()
MILESTONES = [('prompt', 'Please enter passphrase for disk'), ('handed', 'key handed to systemd-cryptsetup'),
              ('refused', 'REFUSED by'), ('marker', 'BOOTKEY-MARKER')]
seen = set()
text, start = '', 0
with open(log_path, 'ab', buffering=0) as log:
    while True:
        try:
            b = s.recv(65536)
        except OSError:
            break
        if not b:
            break
        log.write(b)
        text += b.decode('utf-8', 'replace')
        for name, rx in MILESTONES:
            if name not in seen and rx in text:
                seen.add(name)
                with open(log_path + '.times', 'a') as tf:
                    tf.write('%s %.2f\n' % (name, time.monotonic() - t0))
        while pending:
            m = re.search(pending[0][0], text[start:])
            if not m:
                break
            start += m.end()
            time.sleep(0.3)
            s.sendall(pending[0][1].encode() + b'\r')
            # noted in LOG.typed, not in LOG: a note written into the console text could split a
            # console line that the tests match
            with open(log_path + '.typed', 'a') as tf:
                tf.write('typed a reply to /%s/ at %.2f s\n' % (pending[0][0], time.monotonic() - t0))
            pending.pop(0)
