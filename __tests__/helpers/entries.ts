/** A made-up download entry for tests that render or merge entries without a server. */
import type { Entry } from '../../server/protocol/wire';

export const testEntry = (id: string, patch: Partial<Entry> = {}): Entry => ({
  id,
  dest: `loras/${id}.safetensors`,
  folder: 'loras',
  filename: `${id}.safetensors`,
  url: `http://example.test/${id}.safetensors`,
  status: 'downloading',
  progress: 0,
  downloaded: 0,
  file_size: 100,
  speed: 0,
  eta: null,
  start_time: 1,
  timestamp: 1,
  attempts: 1,
  ...patch,
});
