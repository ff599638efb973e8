#!/usr/bin/env node
// The `tollgate` bin: the operator's CLI (apps/cli), compiled by `npm run build`.
require('../dist/apps/cli/src/tollgate.js').main();
