'use strict';

// `node -r forkline/register app.js` (CommonJS; also what `--import` falls back to without the `import` condition):
// see lib/register.js.
require('./lib/register').register();
