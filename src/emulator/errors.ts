/**
 * Discord's REST error shapes. A handler throws `DiscordHttpError`; the router turns it into the JSON body
 * `{code, message, errors?}` with the same HTTP status Discord uses, which discord.js turns into a DiscordAPIError.
 */

/** Discord's nested error tree for 50035 "Invalid Form Body": `{field: {0: {sub: {_errors: [{code, message}]}}}}`. */
export interface FieldErrorTree {
  [key: string]: FieldErrorTree | { code: string; message: string }[];
}

export class DiscordHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly errors?: FieldErrorTree,
  ) {
    super(message);
    this.name = 'DiscordHttpError';
  }

  toBody(): Record<string, unknown> {
    return this.errors ? { message: this.message, code: this.code, errors: this.errors } : { message: this.message, code: this.code };
  }
}

export const unauthorized = () => new DiscordHttpError(401, 0, '401: Unauthorized');
export const notFound = () => new DiscordHttpError(404, 0, '404: Not Found');
export const unknownChannel = () => new DiscordHttpError(404, 10003, 'Unknown Channel');
export const unknownGuild = () => new DiscordHttpError(404, 10004, 'Unknown Guild');
export const unknownMember = () => new DiscordHttpError(404, 10007, 'Unknown Member');
export const unknownMessage = () => new DiscordHttpError(404, 10008, 'Unknown Message');
export const unknownUser = () => new DiscordHttpError(404, 10013, 'Unknown User');
export const unknownWebhook = () => new DiscordHttpError(404, 10015, 'Unknown Webhook');
export const unknownApplication = () => new DiscordHttpError(404, 10002, 'Unknown Application');
export const unknownInteraction = () => new DiscordHttpError(404, 10062, 'Unknown interaction');
export const unknownCommand = () => new DiscordHttpError(404, 10063, 'Unknown application command');
export const entityTooLarge = () => new DiscordHttpError(413, 40005, 'Request entity too large');
export const alreadyAcknowledged = () => new DiscordHttpError(400, 40060, 'Interaction has already been acknowledged.');
export const missingAccess = () => new DiscordHttpError(403, 50001, 'Missing Access');
export const emptyMessage = () => new DiscordHttpError(400, 50006, 'Cannot send an empty message');
export const missingPermissions = () => new DiscordHttpError(403, 50013, 'Missing Permissions');
export const invalidWebhookToken = () => new DiscordHttpError(401, 50027, 'Invalid Webhook Token');
export const invalidJson = () => new DiscordHttpError(400, 50109, 'The request body contains invalid JSON.');
export const tooManyCommands = () =>
  new DiscordHttpError(400, 30032, 'Maximum number of application commands reached (100)');

/** Collects field errors under dotted paths and produces Discord's 50035 error when any were found. */
export class FormErrors {
  private readonly tree: FieldErrorTree = {};
  private count = 0;

  add(path: (string | number)[], code: string, message: string): void {
    let node: FieldErrorTree = this.tree;
    for (const key of path.map(String)) {
      const child = node[key];
      if (child === undefined || Array.isArray(child)) {
        const created: FieldErrorTree = {};
        node[key] = created;
        node = created;
      } else {
        node = child;
      }
    }
    const list = node['_errors'];
    if (Array.isArray(list)) list.push({ code, message });
    else node['_errors'] = [{ code, message }];
    this.count += 1;
  }

  get empty(): boolean {
    return this.count === 0;
  }

  /** Throws 400/50035 "Invalid Form Body" with the collected tree, if there is anything in it. */
  throwIfAny(): void {
    if (this.count > 0) throw new DiscordHttpError(400, 50035, 'Invalid Form Body', this.tree);
  }
}

/** Raised by the control API when the request is one Discord's own client would never have sent. */
export class SandboxRequestError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'SandboxRequestError';
  }
}
