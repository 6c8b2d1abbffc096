// `node --import forkline/register app.js`: see lib/register.js.
import { createRequire } from 'node:module';

createRequire(import.meta.url)('./lib/register.js').register();
