// Times for people: every command prints times in one stated zone, the business time zone
// of canon.settings (America/Lima by default), never a mix of UTC and local.

/** 2026-12-02 11:37 (or 11:37:05) in the given IANA zone. */
export function inZone(value: string | Date | null | undefined, timeZone: string, seconds = false): string {
  if (value === null || value === undefined) return '-';
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  // sv-SE writes ISO-like "2026-12-02 11:37:05"
  return new Intl.DateTimeFormat('sv-SE', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    ...(seconds ? { second: '2-digit' } : {}),
    hourCycle: 'h23',
  })
    .format(d)
    .replace(',', '');
}
