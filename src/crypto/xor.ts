// Block-wise XOR used by the memory cipher's tweak step; word-wide when the views allow it.

/** dst[i] = a[i] ^ b[i] for i < dst.length. `dst` may alias `a`. */
export function xorInto(dst: Uint8Array, a: Uint8Array, b: Uint8Array): void {
  const n = dst.length;
  if (((dst.byteOffset | a.byteOffset | b.byteOffset | n) & 3) === 0) {
    const d = new Int32Array(dst.buffer, dst.byteOffset, n >> 2);
    const x = new Int32Array(a.buffer, a.byteOffset, n >> 2);
    const y = new Int32Array(b.buffer, b.byteOffset, n >> 2);
    for (let i = 0; i < d.length; i++) d[i] = (x[i] as number) ^ (y[i] as number);
    return;
  }
  for (let i = 0; i < n; i++) dst[i] = (a[i] as number) ^ (b[i] as number);
}
