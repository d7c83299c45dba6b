// The character encoding of a CSV file for `cabinet-leads import-leads`: what Excel writes
// is UTF-8 ("CSV UTF-8", with a BOM), Windows-1252 (plain "CSV" on a Windows in a Western
// locale, Spanish included) or UTF-16 with a BOM ("Unicode text"). DecodeToUtf8 turns any
// of them into UTF-8 for the parser, in one pass, deciding by itself unless told:
// * a BOM decides (EF BB BF UTF-8, FF FE UTF-16LE, FE FF UTF-16BE);
// * otherwise the first non-ASCII character decides: a valid UTF-8 sequence means UTF-8
//   (everything before it is ASCII, the same in both), anything else Windows-1252. A file
//   read as UTF-8 that breaks UTF-8 later mixes encodings and is refused, naming the offset
//   and line (never silently turned into "JosÃ©"); --encoding windows-1252 reads it all
//   as Windows-1252. A pure ASCII file is UTF-8.
// No statistical detector (chardet): the choice is between two encodings, and UTF-8
// validity decides it exactly, on any length of file. No decoding library either (nor
// TextDecoder('windows-1252'), which Node 20 decodes as Latin-1: 0x80 is not €): Node
// decodes UTF-8, Latin-1 and UTF-16LE natively, and Windows-1252 is Latin-1 but for 32
// bytes (the table below); twice as fast as iconv-lite's table lookup per byte.
import { isAscii, isUtf8 } from 'node:buffer';
import { Transform, type TransformCallback } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { UsageError } from '../errors.js';

export type Encoding = 'utf-8' | 'windows-1252' | 'utf-16le' | 'utf-16be';
export type EncodingChoice = Encoding | 'auto';

/** How the encoding was decided, for the summary. */
export type EncodingSource = 'bom' | 'content' | 'flag' | 'ascii';

const NAMES: Record<string, EncodingChoice> = {
  auto: 'auto',
  'utf-8': 'utf-8',
  utf8: 'utf-8',
  'windows-1252': 'windows-1252',
  cp1252: 'windows-1252',
  // WHATWG (and every browser) reads these labels as Windows-1252 too
  latin1: 'windows-1252',
  'iso-8859-1': 'windows-1252',
  ansi: 'windows-1252',
  'utf-16': 'utf-16le',
  'utf-16le': 'utf-16le',
  'utf-16be': 'utf-16be',
};

/** The --encoding flag's value, or a UsageError naming it. */
export function parseEncoding(command: string, raw: string | undefined): EncodingChoice {
  if (raw === undefined) return 'auto';
  const e = NAMES[raw.trim().toLowerCase()];
  if (!e) throw new UsageError(`${command}: invalid --encoding ${JSON.stringify(raw)}: expected auto, utf-8, windows-1252 (also cp1252, latin1), utf-16le or utf-16be`);
  return e;
}

/**
 * Windows-1252's bytes 0x80-0x9F (the other 224 are ISO-8859-1, Unicode's first code
 * points); U+FFFD for the five it leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D).
 */
const CP1252_80_9F =
  '\u20AC\uFFFD\u201A\u0192\u201E\u2026\u2020\u2021\u02C6\u2030\u0160\u2039\u0152\uFFFD\u017D\uFFFD' +
  '\uFFFD\u2018\u2019\u201C\u201D\u2022\u2013\u2014\u02DC\u2122\u0161\u203A\u0153\uFFFD\u017E\u0178';

/** Windows-1252 bytes as text (one character per byte, so an index is a byte offset). */
export function decodeWindows1252(buf: Buffer): string {
  const text = buf.toString('latin1');
  return /[\x80-\x9f]/.test(text) ? text.replace(/[\x80-\x9f]/g, (c) => CP1252_80_9F[c.charCodeAt(0) - 0x80]!) : text;
}

/** UTF-16 (LE or BE) to text across chunks: a character may be cut between two reads. */
class Utf16Decoder {
  private readonly decoder = new StringDecoder('utf16le');
  private carry: Buffer = Buffer.alloc(0);
  constructor(private readonly bigEndian: boolean) {}

  write(chunk: Buffer): string {
    if (!this.bigEndian) return this.decoder.write(chunk);
    const buf = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const even = buf.length - (buf.length % 2);
    this.carry = Buffer.from(buf.subarray(even));
    return this.decoder.write(Buffer.from(buf.subarray(0, even)).swap16());
  }

  end(): string {
    return this.decoder.end();
  }
}

/** The encoding a file starts with a BOM of, if any. */
export function bomEncoding(head: Buffer): Encoding | undefined {
  if (head.length >= 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) return 'utf-8';
  if (head.length >= 2 && head[0] === 0xff && head[1] === 0xfe) return 'utf-16le';
  if (head.length >= 2 && head[0] === 0xfe && head[1] === 0xff) return 'utf-16be';
  return undefined;
}

/** Length of the UTF-8 sequence a lead byte starts (0: not a lead byte). */
function sequenceLength(b: number): number {
  return b < 0x80 ? 1 : (b & 0xe0) === 0xc0 ? 2 : (b & 0xf0) === 0xe0 ? 3 : (b & 0xf8) === 0xf0 ? 4 : 0;
}

/** Length of the prefix of buf that ends on a complete UTF-8 sequence. */
function completeUtf8Length(buf: Buffer): number {
  const n = buf.length;
  for (let i = n - 1; i >= 0 && i >= n - 4; i--) {
    const b = buf[i]!;
    if ((b & 0xc0) === 0x80) continue; // continuation byte
    const len = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return i + len > n ? i : n;
  }
  return n;
}

/** Offset of the first byte that breaks UTF-8 (only called on a buffer that is not). */
function firstInvalidUtf8(buf: Buffer): number {
  let i = 0;
  while (i < buf.length) {
    const len = sequenceLength(buf[i]!);
    if (len === 0 || !isUtf8(buf.subarray(i, i + len))) return i;
    i += len;
  }
  return buf.length;
}

function firstNonAscii(buf: Buffer): number {
  for (let i = 0; i < buf.length; i++) if (buf[i]! >= 0x80) return i;
  return -1;
}

function countLf(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) n++;
  return n;
}

/** A file that cannot be decoded as a whole: nothing loads (exit 2, like a wrong kind of file). */
export class EncodingError extends Error {
  readonly exitCode = 2;
  override name = 'EncodingError';
}

/**
 * Bytes of the file in, UTF-8 bytes out (a UTF-8 BOM is passed on: the parser drops it).
 * `encoding`, `source` and `decidedOnLine` say what was decided, once it is.
 */
export class DecodeToUtf8 extends Transform {
  encoding: Encoding | undefined;
  source: EncodingSource = 'ascii';
  /** line of the first non-ASCII character, when that decided */
  decidedOnLine: number | undefined;
  /** file offset of the first byte not yet passed on */
  private offset = 0;
  /** LF bytes passed on so far (the line of an error) */
  private newlines = 0;
  private tail: Buffer = Buffer.alloc(0);
  private started = false;
  private decoder: Utf16Decoder | undefined;

  constructor(private readonly file: string, choice: EncodingChoice) {
    super();
    if (choice !== 'auto') {
      this.encoding = choice;
      this.source = 'flag';
    }
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.decodeChunk(this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk, false);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      if (this.tail.length > 0 || !this.started) this.decodeChunk(this.tail, true);
      const rest = this.decoder?.end();
      if (rest) this.push(Buffer.from(rest, 'utf8'));
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  private decodeChunk(buf: Buffer, final: boolean): void {
    this.tail = Buffer.alloc(0);
    if (!this.started) {
      // a BOM needs its 3 bytes before anything is decided
      if (buf.length < 3 && !final) {
        this.tail = Buffer.from(buf);
        return;
      }
      this.started = true;
      const bom = bomEncoding(buf);
      if (bom !== undefined && this.encoding === undefined) {
        this.encoding = bom;
        this.source = 'bom';
      }
      // (a UTF-16 BOM decodes to U+FEFF, which becomes the UTF-8 BOM the parser drops)
      if (this.encoding === 'utf-16le' || this.encoding === 'utf-16be') this.decoder = new Utf16Decoder(this.encoding === 'utf-16be');
    }
    if (this.encoding === undefined) {
      const at = isAscii(buf) ? -1 : firstNonAscii(buf);
      if (at < 0) {
        this.pass(buf);
        return;
      }
      const len = sequenceLength(buf[at]!);
      if (len > 1 && at + len > buf.length && !final) {
        // the sequence that decides is cut by the chunk: decide on the next one
        this.pass(buf.subarray(0, at));
        this.tail = Buffer.from(buf.subarray(at));
        return;
      }
      this.encoding = len > 1 && isUtf8(buf.subarray(at, at + len)) ? 'utf-8' : 'windows-1252';
      this.source = 'content';
      this.decidedOnLine = this.newlines + countLf(buf.subarray(0, at)) + 1;
    }
    switch (this.encoding) {
      case 'utf-8': {
        const cut = final ? buf.length : completeUtf8Length(buf);
        const body = buf.subarray(0, cut);
        if (!isUtf8(body)) throw this.notUtf8(firstInvalidUtf8(body), body);
        this.pass(body);
        this.tail = Buffer.from(buf.subarray(cut));
        return;
      }
      case 'windows-1252': {
        const text = decodeWindows1252(buf);
        // 0x81, 0x8D, 0x8F, 0x90, 0x9D are no character of Windows-1252 (decoded as U+FFFD)
        const bad = text.indexOf('\uFFFD');
        if (bad >= 0) {
          throw new EncodingError(
            `import-leads: ${this.file} is not Windows-1252: byte 0x${buf[bad]!.toString(16).toUpperCase()} at offset ${this.offset + bad}, line ${this.newlines + countLf(buf.subarray(0, bad)) + 1}, is no character of it (save it as "CSV UTF-8"); nothing was loaded`,
          );
        }
        this.newlines += countLf(buf);
        this.offset += buf.length;
        this.push(Buffer.from(text, 'utf8'));
        return;
      }
      default: {
        this.offset += buf.length;
        const text = this.decoder!.write(buf);
        if (text) this.push(Buffer.from(text, 'utf8'));
      }
    }
  }

  private pass(buf: Buffer): void {
    if (buf.length === 0) return;
    this.newlines += countLf(buf);
    this.offset += buf.length;
    this.push(buf);
  }

  private notUtf8(at: number, body: Buffer): EncodingError {
    const line = this.newlines + countLf(body.subarray(0, at)) + 1;
    const where = `invalid byte at offset ${this.offset + at}, line ${line}`;
    if (this.source === 'content') {
      return new EncodingError(
        `import-leads: ${this.file} mixes encodings: read as UTF-8 from its first non-ASCII character (line ${this.decidedOnLine}), it is not UTF-8 further on: ${where}; save it again as "CSV UTF-8", or read it all as Windows-1252 with --encoding windows-1252; nothing was loaded`,
      );
    }
    const utf16 = this.offset + at === 0 ? ' (it looks like UTF-16: save it as "CSV UTF-8")' : ' (save it as "CSV UTF-8")';
    return new EncodingError(`import-leads: ${this.file} is not UTF-8: ${where}${utf16}; nothing was loaded`);
  }
}

/** A decoded start of a file, for sniffing its header (no error: a guess for the delimiter). */
export function decodeHead(head: Buffer, choice: EncodingChoice): string {
  const enc = choice !== 'auto' ? choice : bomEncoding(head) ?? (isUtf8(head.subarray(0, completeUtf8Length(head))) ? 'utf-8' : 'windows-1252');
  let text: string;
  if (enc === 'utf-8') text = head.subarray(0, completeUtf8Length(head)).toString('utf8');
  else if (enc === 'windows-1252') text = decodeWindows1252(head);
  else text = new Utf16Decoder(enc === 'utf-16be').write(head);
  return text.replace(/^\uFEFF/, '');
}
