import { checkContentRange } from '../../server/net/content-range';

// The 206 check of every path that appends a range to stored bytes (issue pattern 8).

const refused = (header: string | undefined, want: Parameters<typeof checkContentRange>[1]): string => {
  try {
    checkContentRange(header, want);
  } catch (err) {
    expect(err).toMatchObject({ code: 'BAD_RESPONSE', retryable: true });
    return (err as Error).message;
  }
  throw new Error(`accepted ${header}`);
};

test('8. an honest 206 from a file that changed size upstream is refused: the total is compared with the stored size', () => {
  expect(refused('bytes 1048576-4194303/4194304', { start: 1048576, total: 2097152 })).toBe('the file changed upstream: it is 4194304 bytes now, 2097152 before');
  expect(checkContentRange('bytes 1048576-4194303/4194304', { start: 1048576, total: 4194304 })).toEqual({ start: 1048576, end: 4194303, total: 4194304 });
});

test('the start must be the one asked for, the end not past the one asked for', () => {
  expect(refused('bytes 0-99/100', { start: 50 })).toMatch(/from 0 when bytes from 50/);
  expect(refused('bytes 10-99/100', { start: 10, end: 49 })).toMatch(/up to 99 when bytes up to 49/);
  expect(checkContentRange('bytes 10-29/100', { start: 10, end: 49 })).toEqual({ start: 10, end: 29, total: 100 }); // less than asked: the caller asks again for the rest
});

test('an unknown total is accepted only when no size is known to check it against', () => {
  expect(checkContentRange('bytes 0-0/*', { start: 0 })).toEqual({ start: 0, end: 0, total: null });
  expect(refused('bytes 5-9/*', { start: 5, total: 10 })).toMatch(/did not say the file's size/);
});

test('the Content-Length must be the length of the range', () => {
  expect(checkContentRange('bytes 5-9/10', { start: 5, contentLength: '5' }).end).toBe(9);
  expect(refused('bytes 5-9/10', { start: 5, contentLength: '6' })).toMatch(/Content-Length \(6\)/);
});

test.each([undefined, '', 'bytes */100', 'bytes 5-4/10', 'bytes 5-10/10', 'bytes=5-9/10', 'items 5-9/10', 'bytes 5-9/10, bytes 0-1/10', 'bytes -5-9/10', 'bytes 5 - 9/10', 'bytes 99999999999999999-99999999999999999/*'])(
  '%j is refused',
  (header) => {
    refused(header, { start: 5 });
  },
);

test('case and surrounding spaces of the unit do not matter', () => {
  expect(checkContentRange(' Bytes 5-9/10 ', { start: 5, total: 10 })).toEqual({ start: 5, end: 9, total: 10 });
});
