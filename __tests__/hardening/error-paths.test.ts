/**
 * What a client is told of a failure never names a path of the server's disk, and a disk-full
 * message says "kept" only when there are bytes to keep.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { diskError } from '../../server/downloader/response';
import { AppError, withoutPaths } from '../../server/errors';
import { tempDir } from '../helpers/harness';

const sysError = (code: string, syscall: string, file: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`${code}: something, ${syscall} '${file}'`), { code, syscall, path: file });

test('absolute paths are cut to their last segment; URLs and relative paths are left alone', () => {
  expect(withoutPaths("ENAMETOOLONG: name too long, open '/srv/models/loras/x.bin.part.json.123'")).toBe("ENAMETOOLONG: name too long, open 'x.bin.part.json.123'");
  expect(withoutPaths('cannot read C:\\Users\\me\\models\\a.bin')).toBe('cannot read a.bin');
  expect(withoutPaths('from https://huggingface.co/org/repo/resolve/main/a.bin')).toBe('from https://huggingface.co/org/repo/resolve/main/a.bin');
  expect(withoutPaths('loras/SDXL/a.bin is a folder; 3/4 done')).toBe('loras/SDXL/a.bin is a folder; 3/4 done');
  expect(new AppError('ERROR', "EACCES: permission denied, open '/root/secret/x'").toJSON().message).toBe("EACCES: permission denied, open 'x'");
});

test('a disk error says the errno, never the path; "kept" only when a .part holds bytes', async () => {
  const { dir, cleanup } = await tempDir('md-errpath-');
  try {
    const abs = path.join(dir, 'loras', 'model.bin');
    const odd = diskError(sysError('EMLINK', 'open', `${abs}.part`), abs);
    expect(odd.code).toBe('EMLINK');
    expect(odd.message).not.toContain(dir);
    expect(odd.message).toMatch(/model\.bin: EMLINK \(open\)/);

    expect(diskError(sysError('ENOSPC', 'write', `${abs}.part`), abs).message).toMatch(/nothing of it was written/);
    await fs.mkdir(path.dirname(abs), { recursive: true });
    await fs.writeFile(`${abs}.part`, Buffer.alloc(100));
    const full = diskError(sysError('ENOSPC', 'write', `${abs}.part`), abs);
    expect(full.message).toMatch(/the bytes downloaded so far are kept/);
    expect(full.message).not.toContain(dir);
  } finally {
    await cleanup();
  }
});
