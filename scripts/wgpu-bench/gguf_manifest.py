# Splits a GGUF into what a device call can carry (64 MiB): header.bin (metadata + tensor
# infos), small.bin (f32 / f16 tensors, verbatim) and manifest.json (every tensor's type, offset,
# size). rebuild_gguf.py puts a GGUF of the same shapes back together on the device.
import struct, sys, json
path, out = sys.argv[1], sys.argv[2]
f = open(path, 'rb').read()
pos = 0
def rd(fmt):
    global pos
    v = struct.unpack_from('<' + fmt, f, pos); pos += struct.calcsize('<' + fmt); return v[0]
def rstr():
    global pos
    n = rd('Q'); s = f[pos:pos+n]; pos += n; return s.decode('utf-8', 'replace')
SZ = {0:'B',1:'b',2:'H',3:'h',4:'I',5:'i',6:'f',7:'?',10:'Q',11:'q',12:'d'}
def rval(t):
    if t == 8: return rstr()
    if t == 9:
        et = rd('I'); n = rd('Q'); return [rval(et) for _ in range(n)]
    return rd(SZ[t])
assert f[:4] == b'GGUF'; pos = 4
ver = rd('I'); nt = rd('Q'); nkv = rd('Q')
align = 32
for _ in range(nkv):
    k = rstr(); t = rd('I'); v = rval(t)
    if k == 'general.alignment': align = v
tensors = []
for _ in range(nt):
    name = rstr(); nd = rd('I'); dims = [rd('Q') for _ in range(nd)]; ty = rd('I'); off = rd('Q')
    tensors.append(dict(name=name, dims=dims, type=ty, offset=off))
start = (pos + align - 1) // align * align
BL = {0:(1,4),1:(1,2),2:(32,18),3:(32,20),8:(32,34)}
small = bytearray()
for t in tensors:
    n = 1
    for d in t['dims']: n *= d
    bl, bb = BL[t['type']]
    t['bytes'] = n // bl * bb
    if t['type'] in (0, 1):
        t['small_at'] = len(small)
        small += f[start + t['offset']: start + t['offset'] + t['bytes']]
json.dump(dict(data_start=start, total=len(f), tensors=tensors), open(out + '/manifest.json', 'w'))
open(out + '/header.bin', 'wb').write(f[:start])
open(out + '/small.bin', 'wb').write(small)
print('header', start, 'small', len(small), 'tensors', len(tensors), set(t['type'] for t in tensors))
