#!/usr/bin/env node
// `npm run migration:generate -- <Name>`: a new, empty, timestamped migration in libs/persistence/src/migrations,
// registered in its index. Tollgate maps no entities (the hot paths are set-based SQL), so there is no model to
// diff against: migrations are written by hand as SQL, like the initial schema.
const fs = require('node:fs');
const path = require('node:path');

const name = process.argv[2];
if (!name || !/^[A-Z][A-Za-z0-9]*$/.test(name)) {
  process.stderr.write('usage: npm run migration:generate -- <PascalCaseName>\n');
  process.exit(2);
}
const dir = path.join(__dirname, '..', 'libs', 'persistence', 'src', 'migrations');
const stamp = Date.now();
const className = `${name}${stamp}`;
const file = `${stamp}-${name}`;
fs.writeFileSync(
  path.join(dir, `${file}.ts`),
  `import { MigrationInterface, QueryRunner } from 'typeorm';

export class ${className} implements MigrationInterface {
  name = '${className}';

  async up(q: QueryRunner): Promise<void> {
    await q.query(\`\`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(\`\`);
  }
}
`,
);
const index = path.join(dir, 'index.ts');
let text = fs.readFileSync(index, 'utf8');
// The list is one migration per line, each followed by a comma: the new one goes last, the same way.
text = text.replace(/(\nexport const migrations = \[)([^\]]*?)\s*\]/, (_, head, list) => `${head}${list.replace(/,?$/, ',')}\n  ${className},\n]`);
text = text.replace(/((?:^import .*\n)+)/m, `$1import { ${className} } from './${file}';\n`);
fs.writeFileSync(index, text);
process.stdout.write(`created libs/persistence/src/migrations/${file}.ts\n`);
