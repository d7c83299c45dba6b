// Small text helpers of the terminal commands: times in one stated zone (the business
// time zone), aligned columns, and arguments quoted for a POSIX shell.

/** 2026-12-02 11:37 in the given IANA zone (what status, explain and review print). */
export function inZone(value: string | Date | null | undefined, timeZone: string, seconds = false): string {
  if (value === null || value === undefined) return '-';
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  // sv-SE writes ISO-like "2026-12-02 11:37:05"
  const s = new Intl.DateTimeFormat('sv-SE', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    ...(seconds ? { second: '2-digit' } : {}),
    hourCycle: 'h23',
  }).format(d);
  return s.replace(',', '');
}

/** Rows of cells as left-aligned columns separated by two spaces (the last column unpadded). */
export function columns(rows: string[][], indent = ''): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, [...c].length)));
  return rows.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i]! - [...c].length))).join('  ').trimEnd());
}

/** An argument as a POSIX shell reads it back unchanged: bare when safe, else single-quoted. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9._:@%+=,/-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
