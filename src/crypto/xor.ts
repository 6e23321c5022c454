// XOR over 64-bit words, the memory cipher's tweak step. V8 compiles a BigInt64Array loop whose
// views are built outside it to plain 64-bit XORs; building views inside the hot function, or a
// byte loop, is several times slower (measured in bench/cipher.ts's notes).

/** Word view of a buffer whose offset and length are multiples of 8. */
export function words64(buf: Uint8Array): BigInt64Array {
  return new BigInt64Array(buf.buffer, buf.byteOffset, buf.byteLength >> 3);
}

/** dst[dOff + i] ^= src[sOff + i] for i < count. */
export function xorWords(
  dst: BigInt64Array,
  dOff: number,
  src: BigInt64Array,
  sOff: number,
  count: number,
): void {
  for (let i = 0; i < count; i++) dst[dOff + i] = (dst[dOff + i] as bigint) ^ (src[sOff + i] as bigint);
}

/** dst[i] = a[i] ^ b[i] for i < dst.length (any alignment). `dst` may alias `a`. */
export function xorInto(dst: Uint8Array, a: Uint8Array, b: Uint8Array): void {
  const n = dst.length;
  for (let i = 0; i < n; i++) dst[i] = (a[i] as number) ^ (b[i] as number);
}
