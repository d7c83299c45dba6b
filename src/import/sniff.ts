// What kind of file `cabinet-leads import-leads` was given, from its first bytes (never
// from its name alone: people rename files), and which delimiter a CSV file uses, from
// its header line. Excel writes ',' in most locales, ';' where the decimal separator is a
// comma (Spanish Windows), TAB for "Unicode text".
import { open } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { REQUIRED_COLUMNS } from './leads-csv.js';

export type FileFormat = 'csv' | 'xlsx';

/** Delimiters tried, in order of preference when the header does not decide. */
export const DELIMITERS = [',', ';', '\t'] as const;

/** Bytes read to sniff the format and the header. */
const HEAD_BYTES = 64 * 1024;

export async function readHead(file: string): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await fh.read(buf, 0, HEAD_BYTES, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

const ZIP = Buffer.from([0x50, 0x4b, 0x03, 0x04]);
const OLE = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]);

/** csv or xlsx by content; a workbook kind that is neither is a UsageError that says what to do. */
export function formatOf(file: string, head: Buffer): FileFormat {
  const ext = path.extname(file).toLowerCase();
  if (head.subarray(0, 4).equals(ZIP)) return 'xlsx';
  if (head.subarray(0, 8).equals(OLE)) {
    throw new UsageError(`import-leads: ${file} is an Excel 97-2003 workbook (.xls): open it in Excel and save it as "Excel Workbook (.xlsx)" or "CSV UTF-8"`);
  }
  if (ext === '.xlsx' || ext === '.xlsm') throw new UsageError(`import-leads: ${file} is named ${ext} but is not an Excel workbook (no zip signature)`);
  return 'csv';
}

/** The fields of the record that starts at `start`, split by `delimiter` (RFC 4180 quotes). */
function headerFields(text: string, start: number, delimiter: string): string[] {
  const fields: string[] = [];
  let i = start;
  for (;;) {
    let value = '';
    if (text[i] === '"') {
      i++;
      while (i < text.length) {
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            value += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        value += text[i++];
      }
    }
    while (i < text.length && text[i] !== delimiter && text[i] !== '\n' && text[i] !== '\r') value += text[i++];
    fields.push(value);
    if (text[i] !== delimiter) return fields;
    i++;
  }
}

/**
 * The delimiter of a CSV file from its decoded start: the first of , ; TAB that splits the
 * header into names including external_id and lead_created_at; when none does (a header
 * without them is refused later, naming what it found), the one that splits it most.
 */
export function sniffDelimiter(text: string): string {
  // (lines before the header that hold nothing, or only delimiters, are skipped by the import too)
  const start = text.search(/[^\s,;"]/);
  if (start < 0) return ',';
  const lineStart = text.lastIndexOf('\n', start) + 1;
  let best: string = ',';
  let bestCount = 1;
  for (const d of DELIMITERS) {
    const fields = headerFields(text, lineStart, d);
    const names = new Set(fields.map((f) => f.trim().toLowerCase()));
    if (REQUIRED_COLUMNS.every((c) => names.has(c))) return d;
    if (fields.length > bestCount) {
      best = d;
      bestCount = fields.length;
    }
  }
  return best;
}

/** The --delimiter flag: one character, or "tab"; a UsageError naming a bad value. */
export function parseDelimiter(command: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const d = raw.toLowerCase() === 'tab' || raw === '\\t' ? '\t' : raw;
  if (d.length !== 1 || /["\r\n]/.test(d)) {
    throw new UsageError(`${command}: invalid --delimiter ${JSON.stringify(raw)}: expected one character other than a quote or a line break, or "tab"`);
  }
  return d;
}
