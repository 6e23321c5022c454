// Offset tables over DataView: every binary format in abi/ is declared as one StructLayout.

/** A malformed buffer: which format, which field, at which byte offset, and why. */
export class AbiDecodeError extends Error {
  constructor(
    readonly format: string,
    readonly field: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${format}: field ${field} at offset 0x${offset.toString(16)}: ${reason}`);
    this.name = 'AbiDecodeError';
  }
}

type ScalarType = 'u8' | 'u16' | 'u32' | 'u64';
export type FieldSpec =
  | { readonly offset: number; readonly type: ScalarType }
  | { readonly offset: number; readonly type: 'bytes'; readonly length: number };
export type FieldSpecs = Readonly<Record<string, FieldSpec>>;

type ValueOf<F extends FieldSpec> = F extends { type: 'bytes' }
  ? Buffer
  : F extends { type: 'u64' }
    ? bigint
    : number;
/** The decoded form of a layout: numbers for u8/u16/u32, bigint for u64, Buffer for byte arrays. */
export type Decoded<S extends FieldSpecs> = { -readonly [K in keyof S]: ValueOf<S[K]> };

const WIDTH: Record<ScalarType, number> = { u8: 1, u16: 2, u32: 4, u64: 8 };

function fieldWidth(f: FieldSpec): number {
  return f.type === 'bytes' ? f.length : WIDTH[f.type];
}

/** A fixed-size little-endian structure. */
export class StructLayout<S extends FieldSpecs> {
  constructor(
    /** Human name used in errors, e.g. "LAUNCH_UPDATE_DATA command buffer". */
    readonly name: string,
    /** Total size in bytes (fields may leave reserved gaps). */
    readonly size: number,
    readonly fields: S,
  ) {
    for (const [field, spec] of Object.entries(fields)) {
      if (spec.offset + fieldWidth(spec) > size)
        throw new Error(`${name}.${field} overruns the ${size}-byte layout`);
    }
  }

  /** Decodes the structure at `offset` of `buf`; a short buffer names the first field it cuts. */
  decode(buf: Uint8Array, offset = 0): Decoded<S> {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const out: Record<string, number | bigint | Buffer> = {};
    for (const [field, spec] of Object.entries(this.fields)) {
      const at = offset + spec.offset;
      const width = fieldWidth(spec);
      if (at + width > buf.byteLength) {
        throw new AbiDecodeError(
          this.name,
          field,
          spec.offset,
          `buffer ends at ${buf.byteLength - offset} bytes, field needs ${spec.offset + width}`,
        );
      }
      switch (spec.type) {
        case 'u8':
          out[field] = view.getUint8(at);
          break;
        case 'u16':
          out[field] = view.getUint16(at, true);
          break;
        case 'u32':
          out[field] = view.getUint32(at, true);
          break;
        case 'u64':
          out[field] = view.getBigUint64(at, true);
          break;
        case 'bytes':
          out[field] = Buffer.from(buf.subarray(at, at + spec.length));
          break;
      }
    }
    return out as Decoded<S>;
  }

  /** Encodes into a new zeroed buffer of `size` bytes; omitted fields stay zero. */
  encode(values: Partial<Decoded<S>>): Buffer {
    const buf = Buffer.alloc(this.size);
    this.write(buf, values);
    return buf;
  }

  /** Writes the given fields in place (e.g. a firmware filling output fields of a command buffer). */
  write(buf: Uint8Array, values: Partial<Decoded<S>>, offset = 0): void {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (const [field, value] of Object.entries(values) as [string, number | bigint | Buffer | undefined][]) {
      const spec = this.fields[field];
      if (spec === undefined || value === undefined) continue;
      const at = offset + spec.offset;
      switch (spec.type) {
        case 'u8':
          view.setUint8(at, Number(value));
          break;
        case 'u16':
          view.setUint16(at, Number(value), true);
          break;
        case 'u32':
          view.setUint32(at, Number(value), true);
          break;
        case 'u64':
          view.setBigUint64(at, BigInt(value as number | bigint), true);
          break;
        case 'bytes': {
          const bytes = value as Buffer;
          if (bytes.length !== spec.length) {
            throw new AbiDecodeError(
              this.name,
              field,
              spec.offset,
              `needs ${spec.length} bytes, got ${bytes.length}`,
            );
          }
          Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).set(bytes, at);
          break;
        }
      }
    }
  }
}
