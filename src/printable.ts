// Text that came from a file or a database, made safe to print on a terminal or in a
// log line: control characters (a newline, an ANSI escape that would recolour or clear
// the screen, C1 controls such as U+009B, which some terminals read as an escape too) and
// characters that print as nothing or as a plain space (zero width, bidi controls, NBSP,
// other Unicode spaces) are written as escapes, so that what is printed is one line and
// shows what the file holds.

/** Characters never printed raw (besides the ones JSON.stringify escapes: C0, quote, backslash). */
const UNPRINTABLE = /[\u007f-\u00a0\u00ad\u061c\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff\ufff9-\ufffb]/g;
/** What makes a value need quoting: the above, C0 controls, a quote or a backslash. */
const NEEDS_QUOTES = new RegExp(`[\\u0000-\\u001f"\\\\]|${UNPRINTABLE.source}`);

function escapeCodeUnit(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** The value in double quotes, escaped as JSON is, plus the characters above: "a\u001b[31m". */
export function quoted(value: string): string {
  return JSON.stringify(value).replace(UNPRINTABLE, escapeCodeUnit);
}

/** The value as it is when every character prints as itself (and it has no blank end), else quoted(value). */
export function shown(value: string): string {
  return value === '' || value.trim() !== value || NEEDS_QUOTES.test(value) ? quoted(value) : value;
}
