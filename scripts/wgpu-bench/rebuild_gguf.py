# Rebuilds a GGUF with the carried model's exact shapes and types (the device call's carry
# limit is 64 MiB, the model 98 MB): header and f32 tensors verbatim, quantized tensors as
# random blocks with valid f16 scales (0.004 .. 0.016) and Q4_1 mins (-0.008 .. -0.03).
# Decode speed does not depend on the weights' values. Pure Python (no numpy needed).
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
m = json.load(open(src + '/manifest.json'))
small = open(src + '/small.bin', 'rb').read()
buf = bytearray(m['total'])
hdr = open(src + '/header.bin', 'rb').read()
buf[:len(hdr)] = hdr
BB = {2: 18, 3: 20, 8: 34}
scale_hi = bytes((i & 7) + 0x1C for i in range(256))
min_hi = bytes((i & 7) + 0xA0 for i in range(256))
for t in m['tensors']:
    at, n = m['data_start'] + t['offset'], t['bytes']
    if 'small_at' in t:
        buf[at:at + n] = small[t['small_at']:t['small_at'] + n]
        continue
    bb = BB[t['type']]
    nb = n // bb
    blk = bytearray(os.urandom(n))
    blk[1::bb] = os.urandom(nb).translate(scale_hi)
    if t['type'] == 3:
        blk[3::bb] = os.urandom(nb).translate(min_hi)
    buf[at:at + n] = blk
open(out, 'wb').write(buf)
print('wrote', out, len(buf))
