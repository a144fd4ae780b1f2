import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import * as messages from '../persistence.messages';

/** One object of a listing. */
export interface ListedObject {
  key: string;
  size: number;
  /** The ETag without its quotes. */
  etag?: string;
  lastModified?: Date;
}

/**
 * A request that failed after the client's own retries, as the library's typed error
 * (`PERSISTENCE_IO_FAILED`, operation `'backup'`): the S3 error code and HTTP status when the server
 * answered, the network error otherwise.
 */
export function s3Failure(action: string, where: string, cause: unknown): PersistenceError {
  const e = cause as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const status = e?.$metadata?.httpStatusCode;
  const name = e?.name && e.name !== 'Error' ? e.name : e?.code;
  const reason = [
    name,
    status !== undefined ? `(HTTP ${status})` : undefined,
    messages.reasonOf(cause).replace(/\.$/, ''),
  ]
    .filter((part) => part !== undefined && part !== '')
    .join(' ');
  return new PersistenceError(
    PersistenceErrorCode.IoFailed,
    messages.s3RequestFailed(action, where, reason),
    { operation: 'backup', path: where, cause },
  );
}

/** A GetObject larger than the caller's limit. */
export class S3ObjectTooLargeError extends Error {}

/** Objects of deletion per DeleteObjects request: the S3 maximum. */
const DELETE_BATCH = 1000;

const isNotFound = (error: unknown): boolean => {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
};

/**
 * The few S3 calls the backup target makes, on one bucket, with its errors named by object. The
 * client retries throttling answers (503 SlowDown) and dropped connections itself, with backoff
 * (`maxAttempts` of the client); what still fails here is thrown by {@link s3Failure}.
 */
export class S3Objects {
  constructor(
    readonly client: S3Client,
    readonly bucket: string,
    private readonly pageSize: number,
  ) {}

  private where(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  private async call<T>(action: string, key: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw error instanceof PersistenceError || error instanceof S3ObjectTooLargeError
        ? error
        : s3Failure(action, this.where(key), error);
    }
  }

  /** Every object under `prefix`, following the listing's continuation tokens. */
  async list(prefix: string): Promise<ListedObject[]> {
    const found: ListedObject[] = [];
    let token: string | undefined;
    do {
      const page = await this.call('list', prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            MaxKeys: this.pageSize,
            ContinuationToken: token,
          }),
        ),
      );
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        found.push({
          key: object.Key,
          size: object.Size ?? 0,
          etag: object.ETag?.replace(/"/g, ''),
          lastModified: object.LastModified,
        });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return found;
  }

  /**
   * Stores `body` under `key`: one PutObject up to `partSize` bytes, else a multipart upload whose
   * parts are slices of `body` (no copy), aborted when a part fails so that no incomplete upload is
   * left behind (as far as the server still answers).
   */
  async put(key: string, body: Buffer, partSize: number): Promise<void> {
    const { bucket: Bucket } = this;
    if (body.length <= partSize) {
      await this.call('upload', key, () =>
        this.client.send(
          new PutObjectCommand({ Bucket, Key: key, Body: body, ContentLength: body.length }),
        ),
      );
      return;
    }
    const { UploadId } = await this.call('start the multipart upload of', key, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket, Key: key })),
    );
    try {
      const parts: Array<{ ETag?: string; PartNumber: number }> = [];
      for (let at = 0, number = 1; at < body.length; at += partSize, number++) {
        const part = body.subarray(at, at + partSize);
        const { ETag } = await this.call(`upload part ${number} of`, key, () =>
          this.client.send(
            new UploadPartCommand({
              Bucket,
              Key: key,
              UploadId,
              PartNumber: number,
              Body: part,
              ContentLength: part.length,
            }),
          ),
        );
        parts.push({ ETag, PartNumber: number });
      }
      await this.call('complete the multipart upload of', key, () =>
        this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key: key,
            UploadId,
            MultipartUpload: { Parts: parts },
          }),
        ),
      );
    } catch (error) {
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket, Key: key, UploadId }))
        .catch(() => undefined);
      throw error;
    }
  }

  /**
   * The object's bytes, streamed into one buffer and never more than `maxBytes` of them (the
   * download stops there: {@link S3ObjectTooLargeError}); `undefined` when there is no such object.
   */
  async get(key: string, maxBytes: number): Promise<Buffer | undefined> {
    return this.call('download', key, async () => {
      let response;
      try {
        response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw error;
      }
      const body = response.Body as
        (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
      if (response.ContentLength !== undefined && response.ContentLength > maxBytes) {
        body?.destroy?.();
        throw new S3ObjectTooLargeError(
          messages.s3ObjectTooLarge(this.where(key), response.ContentLength, maxBytes),
        );
      }
      const chunks: Buffer[] = [];
      let bytes = 0;
      for await (const chunk of body ?? []) {
        bytes += chunk.length;
        if (bytes > maxBytes) {
          body?.destroy?.();
          throw new S3ObjectTooLargeError(
            messages.s3ObjectTooLarge(this.where(key), bytes, maxBytes),
          );
        }
        chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      }
      return Buffer.concat(chunks, bytes);
    });
  }

  /** Deletes `keys` (missing ones count as deleted), in batches; throws on any key not deleted. */
  async delete(keys: readonly string[]): Promise<void> {
    for (let at = 0; at < keys.length; at += DELETE_BATCH) {
      const batch = keys.slice(at, at + DELETE_BATCH);
      const result = await this.call('delete', batch[0], () =>
        this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        ),
      );
      const failed = result.Errors?.[0];
      if (failed) {
        throw s3Failure(
          'delete',
          this.where(failed.Key ?? batch[0]),
          Object.assign(new Error(failed.Message ?? ''), { name: failed.Code ?? 'Error' }),
        );
      }
    }
  }
}
