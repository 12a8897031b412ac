#!/usr/bin/env python3
"""Independent cross-check of the golden fixtures against docs/FORMAT (checkpoint v1, run files
(checkpoint v2 and v3, the uncompressed fixtures) + manifest).

Re-implements XChaCha20-Poly1305 opening (HChaCha20 in pure Python + the `cryptography`
package's ChaCha20Poly1305), the plaintext digests and the manifest HMAC chain from the
format description alone, and decodes tests/golden/*.hex with them. Not run by cargo; the
README test command (scripts/test-all.sh) runs it as
`cd checkpoint/tests/golden && python3 ../golden_independent_check.py`
(the manifest fixtures are read from `manifest/tests/golden/`). Any mismatch fails an assert."""
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

# Run files (checkpoint format versions 2 and 3): header, key check, footer, meta (AAD =
# whole header + footer fields) with the partition directory (v3), each partition's index
# block, every data block, each partition's filter; sealed and plaintext.
def run_file(name, sealed, version):
    f=load(name); H=f[:104]
    assert f[:8]==b'AEDBCKPT' and struct.unpack('<HH',f[8:12])==(version,104)
    assert zlib.crc32(H[:100])==struct.unpack('<I',H[100:104])[0]
    assert H[12]==(1 if sealed else 0) and H[13]==0
    if sealed: xopen(key,H[44:68],H[68:84],b"aedb-run key-check v2\0"+H[:68])
    else: assert H[68:84]==bytes(16)
    F=f[-48:]; assert F[36:44]==b'AEDBRUN\0' and zlib.crc32(F[:44])==struct.unpack('<I',F[44:48])[0]
    io,il,fo,fl,mo,ml=struct.unpack('<QIQIQI',F[:36])
    assert io+il==fo and fo+fl==mo and mo+ml+48==len(f)
    def block(kind,ordinal,off,ln,extra=b''):
        s=f[off:off+ln]; aad=(H if kind==4 else H[:84])+bytes([kind])+struct.pack('<QQ',ordinal,off)+extra
        if sealed: return xopen(key,s[:24],s[24:],aad)
        assert hashlib.sha256(b"aedb-run plaintext block v2\0"+aad+s[:-16]).digest()[:16]==s[-16:]
        return s[:-16]
    m=block(4,0,mo,ml,F[:44])
    entries,distinct,tombs,nblocks=struct.unpack('<QQQI',m[:28]); p=28
    fk_len=struct.unpack('<H',m[p:p+2])[0]; fk=m[p+2:p+2+fk_len]; p+=2+fk_len
    lk_len=struct.unpack('<H',m[p:p+2])[0]; lk=m[p+2:p+2+lk_len]; p+=2+lk_len
    mn,mx,rk,rv=struct.unpack('<QQQQ',m[p:p+32]); p+=32
    assert (mn,mx)==struct.unpack('<QQ',H[84:100])
    # Partitions: (last key, blocks, entries, data_len, index_len, filter_len).
    if version==2:
        assert p==len(m); parts=[(lk,nblocks,entries,io-104,il,fl)]
    else:
        count=struct.unpack('<I',m[p:p+4])[0]; p+=4; parts=[]
        for _ in range(count):
            kl=struct.unpack('<H',m[p:p+2])[0]; last=m[p+2:p+2+kl]; p+=2+kl
            parts.append((last,)+struct.unpack('<IQQII',m[p:p+28])); p+=28
        assert p==len(m)
    out=[]; expect_off=104; ordinal=0; ix_at=io; fl_at=fo
    for part,(plast,pblocks,pentries,pdata,pil,pfl) in enumerate(parts):
        ix=block(2,part,ix_at,pil); ix_at+=pil; n=struct.unpack('<I',ix[:4])[0]; q0=4
        assert n==pblocks; start=expect_off; before=len(out)
        for i in range(n):
            kl=struct.unpack('<H',ix[q0:q0+2])[0]; last=ix[q0+2:q0+2+kl]; q0+=2+kl
            off,ln,cnt=struct.unpack('<QII',ix[q0:q0+16]); q0+=16; assert off==expect_off; expect_off=off+ln
            d=block(1,ordinal,off,ln); ordinal+=1; c=struct.unpack('<I',d[:4])[0]; q=4; assert c==cnt
            for _ in range(c):
                kl2=struct.unpack('<H',d[q:q+2])[0]; k=d[q+2:q+2+kl2]; q+=2+kl2
                lsn,kind,vl=struct.unpack('<QBI',d[q:q+13]); q+=13; v=d[q:q+vl]; q+=vl
                out.append((k.decode(),lsn,{1:'Put',2:'Delete'}[kind],v.decode()))
            assert q==len(d) and out[-1][0].encode()==last
        assert q0==len(ix) and expect_off-start==pdata and len(out)-before==pentries and out[-1][0].encode()==plast
        flt=block(3,part,fl_at,pfl); fl_at+=pfl
        k,nbits=struct.unpack('<BQ',flt[:9]); assert 1<=k<=30 and nbits%8==0 and len(flt)==9+nbits//8
    assert expect_off==io and ix_at==fo and fl_at==mo and ordinal==nblocks
    assert len(out)==entries and out[0][0].encode()==fk and out[-1][0].encode()==lk
    print(name,'partitions:',len(parts),'entries:',out)
run_file('run_sealed_v2',True,2)
run_file('run_plaintext_v2',False,2)
run_file('run_sealed_v3',True,3)
run_file('run_plaintext_v3',False,3)
