// Numbers and times as the console writes them: integers with thousands separators (exact, as the API
// gave them), rates with SI prefixes, times in UTC.

const INT = new Intl.NumberFormat("en-US");

export function int(n) {
  return INT.format(n);
}

/** A value with an SI prefix (k, M, G, …), 3 significant digits: 1.23 M. */
export function si(n, unit = "") {
  const abs = Math.abs(n);
  const prefixes = ["", "k", "M", "G", "T", "P", "E"];
  let i = 0;
  let v = abs;
  while (v >= 1000 && i < prefixes.length - 1) {
    v /= 1000;
    i += 1;
  }
  const digits = v >= 100 || i === 0 ? 0 : v >= 10 ? 1 : 2;
  const text = (n < 0 ? "-" : "") + v.toFixed(i === 0 && !Number.isInteger(v) ? 2 : digits);
  return `${text}${i || unit ? " " : ""}${prefixes[i]}${unit}`;
}

/** UTC text of a time in ns (a Number or a numeric string): 2024-01-01 00:00:00.123 */
export function time(ns, withMs = true) {
  const ms = Number(BigInt(ns) / 1000000n);
  const iso = new Date(ms).toISOString().replace("T", " ").replace("Z", "");
  return withMs ? iso : iso.slice(0, 19);
}

/** A duration in ns as text: 1 h 30 min, 5 s, 250 ms. */
export function span(ns) {
  const s = Number(ns) / 1e9;
  if (s >= 86400) return `${+(s / 86400).toFixed(1)} d`;
  if (s >= 3600) return `${+(s / 3600).toFixed(1)} h`;
  if (s >= 60) return `${+(s / 60).toFixed(1)} min`;
  if (s >= 1) return `${+s.toFixed(1)} s`;
  return `${+(s * 1000).toFixed(1)} ms`;
}

/** Text of a key value (null: the field is not in this flow). */
export function keyText(v) {
  return v === null || v === undefined ? "—" : String(v);
}

const PROTOCOLS = { 1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp", 51: "ah",
  58: "icmpv6", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp" };

/** A value as the page writes it: protocol numbers with their name (6 tcp). */
export function shownValue(field, v) {
  if (v === null || v === undefined) return "—";
  if (field === "Protocol" && PROTOCOLS[v]) return `${v} ${PROTOCOLS[v]}`;
  return String(v);
}
