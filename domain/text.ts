/**
 * Text a client sends that the system stores, logs or shows to someone: it must be text PostgreSQL
 * can store (no NUL byte, well-formed Unicode: no lone UTF-16 surrogates, which JSON can carry but
 * UTF-8 cannot) and free of control characters (which forge log lines and terminal output). One
 * rule for the API's validation and the saga's update validator; a note shown to people (a cancel
 * note, a retry's reason) follows `noteProblem` besides. Pure and deterministic.
 */

// C0 and C1 control characters and DEL (Unicode category Cc), line breaks included: every text field
// this applies to is a single line.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** The same rule as a whole-string pattern, for schemas that publish it (OpenAPI `pattern`). */
// eslint-disable-next-line no-control-regex
export const WITHOUT_CONTROL_CHARACTERS = /^[^\u0000-\u001f\u007f-\u009f]*$/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** What is wrong with `text`, written to follow a field name ("reason must …"), or undefined. */
export function textProblem(text: string): string | undefined {
  if (LONE_SURROGATE.test(text)) return 'must be well-formed Unicode (it holds a lone surrogate)';
  if (CONTROL.test(text)) return 'must not contain control characters';
  return undefined;
}

/**
 * Bidirectional controls: the embeddings, overrides and isolates, and the marks (LRM, RLM, the Arabic
 * letter mark). Invisible, they make stored text read otherwise than it is (in an operator's
 * terminal, a support tool, the customer's order page), and no note needs them.
 */
export const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/**
 * The Unicode line and paragraph separators (categories Zl, Zp): line breaks outside the control
 * characters, which split a note into lines a log or a terminal shows as separate.
 */
export const LINE_SEPARATORS = /[\u2028\u2029]/;

/** The longest note anyone may store: a cancel note, a retry's reason. */
export const MAX_NOTE_LENGTH = 500;

/** `textProblem`, for a note people will read: also not too long, and no bidirectional controls. */
export function noteProblem(text: string): string | undefined {
  if (text.length > MAX_NOTE_LENGTH) return `must be at most ${MAX_NOTE_LENGTH} characters`;
  if (BIDI_CONTROLS.test(text)) return 'must not contain bidirectional control characters';
  if (LINE_SEPARATORS.test(text)) return 'must be one line (no line or paragraph separators)';
  return textProblem(text);
}

/**
 * Control characters (C0, DEL, C1), bidirectional controls and line separators as visible escapes
 * (`\u009b`), for text shown in a terminal: a dead letter's id, type and reason are bytes anyone who
 * could publish chose, a request path is a client's, and a terminal obeys an escape sequence in them
 * (one could hide the line that says a message is untrusted).
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\u0000-\u001f]/g, escapeChar).replace(INVISIBLE_OUTSIDE_C0, escapeChar);
}

/**
 * `printable` for JSON text (a log line, the CLI's --json), whose serializer has already escaped C0
 * (line breaks included) but passes DEL, C1 and the invisible controls through as themselves. The
 * escapes are JSON's own, so the text still parses to what was written.
 */
export function printableJsonLine(line: string): string {
  return INVISIBLE_OUTSIDE_C0_ONE.test(line) ? line.replace(INVISIBLE_OUTSIDE_C0, escapeChar) : line;
}

const INVISIBLE = '\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069';
const INVISIBLE_OUTSIDE_C0 = new RegExp(`[${INVISIBLE}]`, 'g');
const INVISIBLE_OUTSIDE_C0_ONE = new RegExp(`[${INVISIBLE}]`);
const escapeChar = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
