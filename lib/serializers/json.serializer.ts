import { Serializer } from '../interfaces/serializer.interface';

/** Indented JSON: easy to read and diff. */
export class JsonSerializer implements Serializer {
  readonly format: string = 'json';
  readonly extension: string = '.json';

  /** @param indent spaces per level, as `JSON.stringify` takes them (0: none). */
  constructor(readonly indent = 2) {}

  serialize(value: unknown): Buffer {
    return Buffer.from(JSON.stringify(value, null, this.indent), 'utf8');
  }

  deserialize(data: Buffer): unknown {
    return JSON.parse(data.toString('utf8'));
  }
}

/** JSON without white space: smaller files, same reader. */
export class CompactJsonSerializer extends JsonSerializer {
  override readonly format = 'json-compact';

  constructor() {
    super(0);
  }
}
