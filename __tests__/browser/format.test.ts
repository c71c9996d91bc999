/** The page's human units (client/format.ts): pure functions, no browser needed. */
import { formatBytes, formatClock, formatDuration, formatPercent, formatSpeed, hostOf } from '../../client/format';

test('sizes in 1024-based units with three significant digits', () => {
  expect(formatBytes(0)).toBe('0 B');
  expect(formatBytes(1023)).toBe('1023 B');
  expect(formatBytes(1536)).toBe('1.50 KB');
  expect(formatBytes(12.34 * 1024 * 1024)).toBe('12.3 MB');
  expect(formatBytes(319.1 * 1024 * 1024)).toBe('319 MB');
  expect(formatBytes(1023.9 * 1024 * 1024)).toBe('1.00 GB'); // never "1024 MB"
  expect(formatBytes(6.46 * 1024 ** 3)).toBe('6.46 GB');
  expect(formatBytes(null)).toBe('—');
  expect(formatBytes(Number.NaN)).toBe('—');
});

test('speeds, with a dash when nothing flows', () => {
  expect(formatSpeed(2.5 * 1024 * 1024)).toBe('2.50 MB/s');
  expect(formatSpeed(0)).toBe('—');
});

test('durations read like "13 min"', () => {
  expect(formatDuration(0.2)).toBe('1 s');
  expect(formatDuration(45)).toBe('45 s');
  expect(formatDuration(13 * 60 + 10)).toBe('13 min');
  expect(formatDuration(2 * 3600 + 5 * 60)).toBe('2 h 5 min');
  expect(formatDuration(3600 + 59.8 * 60)).toBe('2 h');
  expect(formatDuration(3 * 86_400 + 4 * 3600)).toBe('3 d 4 h');
  expect(formatDuration(null)).toBe('—');
});

test('percent, clock times and hosts', () => {
  expect(formatPercent(42.9)).toBe('42%');
  expect(formatPercent(130)).toBe('100%');
  const now = new Date(2025, 10, 25, 15, 0);
  expect(formatClock(new Date(2025, 10, 25, 14, 32).getTime() / 1000, now, 'en-GB')).toBe('14:32');
  expect(formatClock(new Date(2025, 10, 24, 9, 5).getTime() / 1000, now, 'en-GB')).toBe('24 Nov, 09:05');
  expect(hostOf('https://huggingface.co/x/resolve/main/y')).toBe('huggingface.co');
  expect(hostOf('not a url')).toBe('not a url');
});
