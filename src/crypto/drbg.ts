// HMAC_DRBG with SHA-256 (NIST SP 800-90A Rev.1 §10.1.2), the model's TRNG when a run is seeded.
import { createHmac, randomBytes } from 'node:crypto';

const OUTLEN = 32;

/**
 * A deterministic random bit generator. Seeded, it makes a whole simulated run reproducible;
 * unseeded, it is instantiated from the system RNG. Each component draws from its own instance
 * (a distinct personalization string), so adding a draw in one place does not shift another's keys.
 */
export class Drbg {
  #k: Buffer = Buffer.alloc(OUTLEN, 0x00);
  #v: Buffer = Buffer.alloc(OUTLEN, 0x01);

  private constructor(entropy: Buffer, personalization: string) {
    this.#update(Buffer.concat([entropy, Buffer.from(personalization, 'utf8')]));
  }

  /** A generator whose whole output follows from `seed` and the component label. */
  static fromSeed(seed: string | number | bigint, label: string): Drbg {
    return new Drbg(Buffer.from(`sevsim-seed:${String(seed)}`, 'utf8'), label);
  }

  /** A generator seeded from the operating system's RNG. */
  static fromSystem(label: string): Drbg {
    return new Drbg(randomBytes(48), label);
  }

  /** A generator for `label` from a seed if one is given, else from the system RNG. */
  static create(seed: string | number | bigint | undefined, label: string): Drbg {
    return seed === undefined ? Drbg.fromSystem(label) : Drbg.fromSeed(seed, label);
  }

  /** The next `length` bytes of output. */
  generate(length: number): Buffer {
    const out = Buffer.alloc(length);
    let filled = 0;
    while (filled < length) {
      this.#v = this.#hmac(this.#k, this.#v);
      filled += this.#v.copy(out, filled);
    }
    this.#update(undefined);
    return out;
  }

  /** A uniformly distributed integer in [0, bound), bound ≤ 2^32. */
  nextInt(bound: number): number {
    if (!Number.isInteger(bound) || bound < 1 || bound > 0x1_0000_0000)
      throw new RangeError(`nextInt bound must be an integer in 1..2^32, got ${bound}`);
    const limit = Math.floor(0x1_0000_0000 / bound) * bound;
    for (;;) {
      const x = this.generate(4).readUInt32LE(0);
      if (x < limit) return x % bound;
    }
  }

  #hmac(key: Buffer, ...parts: Buffer[]): Buffer {
    const h = createHmac('sha256', key);
    for (const p of parts) h.update(p);
    return h.digest();
  }

  #update(provided: Buffer | undefined): void {
    const extra = provided ?? Buffer.alloc(0);
    this.#k = this.#hmac(this.#k, this.#v, Buffer.from([0x00]), extra);
    this.#v = this.#hmac(this.#k, this.#v);
    if (provided === undefined || provided.length === 0) return;
    this.#k = this.#hmac(this.#k, this.#v, Buffer.from([0x01]), extra);
    this.#v = this.#hmac(this.#k, this.#v);
  }

  /** Never print internal state. */
  toJSON(): string {
    return '[Drbg]';
  }
}
