/**
 * How the panel writes numbers, times, durations, latencies, rates and job origins: plain functions of
 * their inputs (and the browser's language and time zone), shared by every view.
 */
import { IJobRow } from './tokens';

export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return '—';
  }
  if (Number.isInteger(value)) {
    return String(value);
  }
  return Math.abs(value) >= 1e4 || Math.abs(value) < 1e-3 ? value.toExponential(3) : value.toPrecision(4);
}

export function formatTime(iso: string | null): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  return isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** An MLflow signature's column list ("name: type, ...") from its JSON; the text itself if it is not JSON. */
export function signatureColumns(text: string | undefined): string {
  if (!text) {
    return '—';
  }
  try {
    const cols = JSON.parse(text) as { name?: string; type?: string }[];
    return cols.map(c => (c.name ? `${c.name}: ${c.type}` : c.type)).join(', ');
  } catch {
    return text;
  }
}

const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [
  ['day', 86_400],
  ['hour', 3_600],
  ['minute', 60],
  ['second', 1]
];

/** "in 5 minutes", "2 hours ago": how far `iso` is from `now`, in the browser's language. */
export function relativeTime(iso: string | null, now: number = Date.now()): string {
  const t = iso ? new Date(iso).getTime() : NaN;
  if (isNaN(t)) {
    return '';
  }
  const seconds = Math.round((t - now) / 1000);
  const [unit, size] = UNITS.find(([, size]) => Math.abs(seconds) >= size) ?? UNITS[UNITS.length - 1];
  return new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }).format(Math.round(seconds / size), unit);
}

/** "Wed 01:00" (within the coming week, else "Dec 24, 01:00"), or without the day; in `timeZone` if given. */
function clockText(instant: Date, now: number, parts: 'day' | 'time' | 'both', timeZone?: string): string {
  const soon = Math.abs(instant.getTime() - now) < 6 * 86_400_000;
  const day: Intl.DateTimeFormatOptions = soon ? { weekday: 'short' } : { month: 'short', day: 'numeric' };
  const time: Intl.DateTimeFormatOptions = { hour: '2-digit', minute: '2-digit' };
  const options = parts === 'day' ? day : parts === 'time' ? time : { ...day, ...time };
  return new Intl.DateTimeFormat(undefined, { ...options, timeZone }).format(instant);
}

/**
 * A schedule's next run in words that name the zone of every time shown: the browser's
 * own clock ("your time") and the schedule's zone, e.g.
 * "Wed 01:00 your time (02:00 in Europe/Berlin), in 19 hours".
 */
export function nextRunText(iso: string, zone: string, now: number = Date.now()): string {
  const instant = new Date(iso);
  if (isNaN(instant.getTime())) {
    return iso;
  }
  const local = `${clockText(instant, now, 'both')} your time`;
  const relative = relativeTime(iso, now);
  let zoned: string;
  try {
    // The schedule's day only when it is not the local one (around midnight).
    const sameDay = clockText(instant, now, 'day', zone) === clockText(instant, now, 'day');
    zoned = clockText(instant, now, sameDay ? 'time' : 'both', zone);
    if (sameDay && zoned === clockText(instant, now, 'time')) {
      return `${local} (the same in ${zone}), ${relative}`;
    }
  } catch {
    return `${local}, ${relative}`; // a zone this browser does not know: the local time is still right
  }
  return `${local} (${zoned} in ${zone}), ${relative}`;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  }
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    return `${m} min ${Math.round(seconds % 60)} s`;
  }
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** Who started a job, in a few words: its schedule, "run now", "pipeline", "sweep" or "manual". */
export function originLabel(job: IJobRow): string {
  const attempt = job.attempt && job.attempt > 1 ? ` · attempt ${job.attempt}` : '';
  switch (job.origin) {
    case 'schedule':
      return `${job.schedule}${attempt}`;
    case 'manual':
      return `${job.schedule} · run now${attempt}`;
    case 'pipeline':
    case 'sweep':
      return job.origin;
    default:
      return 'manual';
  }
}

/** "3.2 ms", "1.24 s": a latency given in milliseconds, to 2 or 3 figures; "—" when unknown. */
export function formatLatency(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !isFinite(ms)) {
    return '—';
  }
  return ms >= 1000 ? `${Number((ms / 1000).toPrecision(3))} s` : `${Number(ms.toPrecision(ms >= 100 ? 3 : 2))} ms`;
}

/** "12/s", "0.05/s": a request rate to 2 figures (whole numbers from 100 on); "—" when unknown. */
export function formatRate(perSecond: number | null | undefined): string {
  if (perSecond === null || perSecond === undefined || !isFinite(perSecond)) {
    return '—';
  }
  return `${perSecond >= 100 ? Math.round(perSecond) : Number(perSecond.toPrecision(2))}/s`;
}
