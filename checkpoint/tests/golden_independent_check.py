#!/usr/bin/env python3
"""Independent cross-check of the golden fixtures against docs/FORMAT (checkpoint + manifest).

Re-implements XChaCha20-Poly1305 opening (HChaCha20 in pure Python + the `cryptography`
package's ChaCha20Poly1305), the plaintext digests and the manifest HMAC chain from the
format description alone, and decodes tests/golden/*.hex with them. Not run by cargo;
run manually: `cd checkpoint/tests/golden && python3 ../golden_independent_check.py`
(the manifest fixtures are read from `manifest/tests/golden/`)."""
import struct, hashlib, hmac, zlib
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
def load(n):
    d = '../../../manifest/tests/golden/' if n.startswith('manifest_') else ''
    return bytes.fromhex(''.join(l.strip() for l in open(d+n+'.hex') if not l.startswith('#')))
def rotl(v,c): return ((v<<c)&0xffffffff)|(v>>(32-c))
def qr(s,a,b,c,d):
    s[a]=(s[a]+s[b])&0xffffffff; s[d]^=s[a]; s[d]=rotl(s[d],16)
    s[c]=(s[c]+s[d])&0xffffffff; s[b]^=s[c]; s[b]=rotl(s[b],12)
    s[a]=(s[a]+s[b])&0xffffffff; s[d]^=s[a]; s[d]=rotl(s[d],8)
    s[c]=(s[c]+s[d])&0xffffffff; s[b]^=s[c]; s[b]=rotl(s[b],7)
def hchacha(key,n16):
    s=list(struct.unpack('<4I',b'expand 32-byte k'))+list(struct.unpack('<8I',key))+list(struct.unpack('<4I',n16))
    for _ in range(10):
        qr(s,0,4,8,12);qr(s,1,5,9,13);qr(s,2,6,10,14);qr(s,3,7,11,15)
        qr(s,0,5,10,15);qr(s,1,6,11,12);qr(s,2,7,8,13);qr(s,3,4,9,14)
    return struct.pack('<8I',*(s[0:4]+s[12:16]))
def xopen(key,nonce,ct_tag,aad):
    sub=hchacha(key,nonce[:16]); return ChaCha20Poly1305(sub).decrypt(b'\0'*4+nonce[16:],ct_tag,aad)
key=b'\x42'*32
f=load('checkpoint_sealed_v1'); H=f[:96]
assert zlib.crc32(H[:92])==struct.unpack('<I',H[92:96])[0]
base=H[48:72]; cs=struct.unpack('<I',H[44:48])[0]
def cn(i): return base[:16]+bytes(a^b for a,b in zip(base[16:],struct.pack('<Q',i)))
# key check
xopen(key,cn(2**64-1),H[72:88],b"aedb-ckpt key-check v1\0"+H[:72])
body=f[96:]; out=b''; i=0
while body:
    n=min(len(body),cs+16); chunk=body[:n]; body=body[n:]
    out+=xopen(key,cn(i),chunk,H+struct.pack('<Q',i)+bytes([1 if not body else 0])); i+=1
print('sealed payload:',out)
p=load('checkpoint_plaintext_v1'); H=p[:96]; body=p[96:]; i=0; out=b''
while body:
    n=min(len(body),cs+16); c=body[:n]; body=body[n:]
    aad=H+struct.pack('<Q',i)+bytes([1 if not body else 0])
    assert hashlib.sha256(b"aedb-ckpt plaintext chunk v1\0"+aad+c[:-16]).digest()[:16]==c[-16:]
    out+=c[:-16]; i+=1
print('plaintext payload:',out)
m=load('manifest_file_v1'); mk=b'\x24'*32
prev=hmac.new(mk,b"aedb manifest header v1\0"+m[:32],'sha256').digest(); assert prev==m[32:64]
off=64; k=0
while off<len(m):
    n=struct.unpack('<I',m[off:off+4])[0]; assert zlib.crc32(m[off:off+4])==struct.unpack('<I',m[off+4:off+8])[0]
    fr=m[off:off+8+n]; mac=m[off+8+n:off+8+n+32]
    assert hmac.new(mk,prev+fr,'sha256').digest()==mac; prev=mac; off+=8+n+32; k+=1
print('manifest records verified:',k)
