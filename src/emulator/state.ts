import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PermissionFlagsBits } from 'discord-api-types/v10';
import { z } from 'zod';
import { snowflakeOnShard } from './sharding.js';
import type { SnowflakeGenerator } from './snowflake.js';

/**
 * The emulated world: one application with its bot user, guilds with text channels, roles and members.
 * Seeded by default with two guilds, each with a non-NSFW and an NSFW channel, an admin (Manage Guild) and two
 * ordinary members; or loaded from a JSON file with the shape of `SeedSchema`.
 */

const snowflakeString = z.string().regex(/^\d{17,20}$/, 'must be a snowflake (17–20 digits)');

export const SeedSchema = z.object({
  application: z
    .object({
      id: snowflakeString.optional(),
      name: z.string().min(1).max(32).default('Imagine'),
      bot_username: z.string().min(2).max(32).optional(),
      token: z.string().min(10).optional(),
    })
    .default({ name: 'Imagine' }),
  users: z
    .array(
      z.object({
        id: snowflakeString.optional(),
        username: z.string().min(2).max(32),
        global_name: z.string().max(32).optional(),
      }),
    )
    .min(1),
  guilds: z
    .array(
      z.object({
        id: snowflakeString.optional(),
        name: z.string().min(2).max(100),
        /** Username or id of the owner (owners hold every permission); defaults to the first admin member. */
        owner: z.string().optional(),
        channels: z.array(z.object({ id: snowflakeString.optional(), name: z.string().min(1).max(100), nsfw: z.boolean().default(false) })).min(1),
        members: z.array(
          z.object({
            /** Username or id from `users`. */
            user: z.string(),
            /** Gives the member the guild's Admin role (Manage Guild + Manage Messages). */
            admin: z.boolean().default(false),
          }),
        ),
        /** Extra permission bits (decimal string) for @everyone, e.g. to remove Use Application Commands. */
        everyone_permissions: z.string().regex(/^\d+$/).optional(),
      }),
    )
    .min(1),
  /** The application's gateway limits, as `GET /gateway/bot` reports and the gateway enforces them. */
  gateway: z
    .object({
      /**
       * Recommended shard count (`shards` of `GET /gateway/bot`; default one per 1 000 guilds). Seeded guilds
       * without an explicit id get ids on shards 0, 1, … in turn, so every shard has guilds when there are enough.
       */
      shards: z.number().int().min(1).max(1024).optional(),
      /** Identify buckets (`session_start_limit.max_concurrency`; Discord: 1, 16+ for large bots). */
      max_concurrency: z.number().int().min(1).max(1024).default(1),
      /** Session starts per 24 h (`session_start_limit.total`; Discord: 1000). */
      session_start_limit: z.number().int().min(1).default(1000),
      /** A session that would hold more guilds is closed with 4011 Sharding required (Discord: 2500). */
      max_guilds_per_session: z.number().int().min(1).default(2500),
    })
    .prefault({}),
});
export type SeedConfig = z.input<typeof SeedSchema>;

export const DEFAULT_SEED: SeedConfig = {
  application: { name: 'Imagine' },
  users: [
    { username: 'ada', global_name: 'Ada' },
    { username: 'bruno', global_name: 'Bruno' },
    { username: 'chloe', global_name: 'Chloe' },
  ],
  guilds: [
    {
      name: 'Imagine Sandbox',
      channels: [
        { name: 'general', nsfw: false },
        { name: 'after-dark', nsfw: true },
      ],
      members: [{ user: 'ada', admin: true }, { user: 'bruno' }, { user: 'chloe' }],
    },
    {
      name: 'Second Guild',
      channels: [
        { name: 'art', nsfw: false },
        { name: 'art-nsfw', nsfw: true },
      ],
      members: [{ user: 'ada', admin: true }, { user: 'bruno' }, { user: 'chloe' }],
    },
  ],
};

/**
 * `seed` run with `shards` shards: the recommendation becomes `shards`, and guilds are added (copies of the last
 * one, named "Shard N Guild") until there is one per shard, so that every shard of the world has a guild.
 */
export function seedWithShards(seed: SeedConfig, shards: number): SeedConfig {
  if (!Number.isSafeInteger(shards) || shards < 1) throw new RangeError('shards must be an integer ≥ 1');
  const guilds = [...seed.guilds];
  const template = guilds.at(-1);
  if (!template) throw new Error('seed: a world needs at least one guild');
  for (let shard = guilds.length; shard < shards; shard += 1) {
    guilds.push({ ...template, id: undefined, name: `Shard ${shard} Guild`, channels: template.channels.map((c) => ({ ...c, id: undefined })) });
  }
  return { ...seed, guilds, gateway: { ...seed.gateway, shards } };
}

export function loadSeedFile(path: string): SeedConfig {
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  return SeedSchema.parse(parsed);
}

const P = PermissionFlagsBits;
/** What @everyone may do in a freshly created Discord guild (the parts that matter to a bot). */
export const EVERYONE_PERMISSIONS =
  P.CreateInstantInvite | P.AddReactions | P.Stream | P.ViewChannel | P.SendMessages | P.EmbedLinks | P.AttachFiles |
  P.ReadMessageHistory | P.MentionEveryone | P.UseExternalEmojis | P.Connect | P.Speak | P.UseVAD | P.ChangeNickname |
  P.UseApplicationCommands | P.SendMessagesInThreads | P.CreatePublicThreads | P.UseExternalStickers;
export const ADMIN_ROLE_PERMISSIONS = EVERYONE_PERMISSIONS | P.ManageGuild | P.ManageMessages | P.ManageRoles;
export const BOT_ROLE_PERMISSIONS =
  P.ViewChannel | P.SendMessages | P.EmbedLinks | P.AttachFiles | P.ReadMessageHistory | P.UseApplicationCommands |
  P.SendMessagesInThreads;
export const ALL_PERMISSIONS = Object.values(PermissionFlagsBits).reduce((all, bit) => all | bit, 0n);

export interface EmulatedUser {
  id: string;
  username: string;
  globalName: string | null;
  bot: boolean;
}
export interface EmulatedRole {
  id: string;
  name: string;
  permissions: bigint;
  position: number;
  managed: boolean;
  botId?: string;
}
export interface EmulatedChannel {
  id: string;
  guildId: string;
  name: string;
  nsfw: boolean;
  position: number;
  lastMessageId: string | null;
}
export interface EmulatedMember {
  userId: string;
  roleIds: string[];
  joinedAt: string;
}
export interface EmulatedGuild {
  id: string;
  name: string;
  ownerId: string;
  roles: EmulatedRole[];
  channels: EmulatedChannel[];
  members: EmulatedMember[];
  adminRoleId: string;
  joinedAt: string;
}

export class EmulatorState {
  readonly applicationId: string;
  readonly applicationName: string;
  readonly botUser: EmulatedUser;
  readonly botToken: string;
  readonly users = new Map<string, EmulatedUser>();
  readonly guilds = new Map<string, EmulatedGuild>();
  readonly channels = new Map<string, EmulatedChannel>();
  readonly gateway: { recommendedShards: number | undefined; maxConcurrency: number; sessionStartTotal: number; maxGuildsPerSession: number };
  /** The application's public key (hex), as Discord shows it in the developer portal. */
  readonly verifyKey = randomBytes(32).toString('hex');

  constructor(seedInput: SeedConfig, ids: SnowflakeGenerator, nowIso: () => string) {
    const seed = SeedSchema.parse(seedInput);
    // Discord gives new applications the same id as their bot user.
    this.applicationId = seed.application.id ?? ids.next();
    this.applicationName = seed.application.name;
    this.botUser = {
      id: this.applicationId,
      username: seed.application.bot_username ?? seed.application.name,
      globalName: null,
      bot: true,
    };
    this.botToken = seed.application.token ?? makeBotToken(this.applicationId);
    this.users.set(this.botUser.id, this.botUser);
    for (const user of seed.users) {
      const id = user.id ?? ids.next();
      this.users.set(id, { id, username: user.username, globalName: user.global_name ?? null, bot: false });
    }
    const findUser = (ref: string): EmulatedUser => {
      const found = this.users.get(ref) ?? [...this.users.values()].find((u) => u.username === ref);
      if (!found) throw new Error(`seed: unknown user "${ref}"`);
      return found;
    };
    this.gateway = {
      recommendedShards: seed.gateway.shards,
      maxConcurrency: seed.gateway.max_concurrency,
      sessionStartTotal: seed.gateway.session_start_limit,
      maxGuildsPerSession: seed.gateway.max_guilds_per_session,
    };
    const spreadOver = seed.gateway.shards;
    seed.guilds.forEach((guildSeed, index) => {
      const guildId = guildSeed.id ?? (spreadOver ? this.guildIdOnShard(ids, index % spreadOver, spreadOver) : ids.next());
      const adminRoleId = ids.next();
      const botRoleId = ids.next();
      const everyone = guildSeed.everyone_permissions ? BigInt(guildSeed.everyone_permissions) : EVERYONE_PERMISSIONS;
      const roles: EmulatedRole[] = [
        // @everyone's id is the guild's id, as on Discord.
        { id: guildId, name: '@everyone', permissions: everyone, position: 0, managed: false },
        { id: adminRoleId, name: 'Admin', permissions: ADMIN_ROLE_PERMISSIONS, position: 1, managed: false },
        { id: botRoleId, name: this.botUser.username, permissions: BOT_ROLE_PERMISSIONS, position: 2, managed: true, botId: this.botUser.id },
      ];
      const members: EmulatedMember[] = guildSeed.members.map((m) => ({
        userId: findUser(m.user).id,
        roleIds: m.admin ? [adminRoleId] : [],
        joinedAt: nowIso(),
      }));
      members.push({ userId: this.botUser.id, roleIds: [botRoleId], joinedAt: nowIso() });
      const firstAdmin = guildSeed.members.find((m) => m.admin);
      const ownerRef = guildSeed.owner ?? firstAdmin?.user ?? guildSeed.members[0]?.user;
      if (!ownerRef) throw new Error(`seed: guild "${guildSeed.name}" has no members`);
      const guild: EmulatedGuild = {
        id: guildId,
        name: guildSeed.name,
        ownerId: findUser(ownerRef).id,
        roles,
        channels: [],
        members,
        adminRoleId,
        joinedAt: nowIso(),
      };
      guildSeed.channels.forEach((c, position) => {
        const channel: EmulatedChannel = { id: c.id ?? ids.next(), guildId, name: c.name, nsfw: c.nsfw, position, lastMessageId: null };
        guild.channels.push(channel);
        this.channels.set(channel.id, channel);
      });
      this.guilds.set(guildId, guild);
    });
  }

  /** A fresh guild id on `shard` of `shardCount`; two guilds made in the same few ms step apart by `shardCount` ms. */
  private guildIdOnShard(ids: SnowflakeGenerator, shard: number, shardCount: number): string {
    let id = snowflakeOnShard(ids.next(), shard, shardCount);
    while (this.guilds.has(id)) id = (BigInt(id) - (BigInt(shardCount) << 22n)).toString();
    return id;
  }

  member(guildId: string, userId: string): EmulatedMember | undefined {
    return this.guilds.get(guildId)?.members.find((m) => m.userId === userId);
  }

  /** Guild-level permissions, computed the way Discord documents it (owner and Administrator get everything). */
  basePermissions(guildId: string, userId: string): bigint {
    const guild = this.guilds.get(guildId);
    const member = this.member(guildId, userId);
    if (!guild || !member) return 0n;
    if (guild.ownerId === userId) return ALL_PERMISSIONS;
    let permissions = guild.roles.find((r) => r.id === guild.id)?.permissions ?? 0n;
    for (const roleId of member.roleIds) permissions |= guild.roles.find((r) => r.id === roleId)?.permissions ?? 0n;
    if ((permissions & P.Administrator) === P.Administrator) return ALL_PERMISSIONS;
    return permissions;
  }

  /** Channel permissions. The seeded channels have no overwrites, so they equal the guild-level permissions. */
  channelPermissions(channelId: string, userId: string): bigint {
    const channel = this.channels.get(channelId);
    return channel ? this.basePermissions(channel.guildId, userId) : 0n;
  }

  isAdmin(guildId: string, userId: string): boolean {
    return (this.basePermissions(guildId, userId) & P.ManageGuild) === P.ManageGuild;
  }
}

/** A token in Discord's format: base64(bot id) . timestamp part . HMAC-like part. */
function makeBotToken(botId: string): string {
  const idPart = Buffer.from(botId).toString('base64url');
  return `${idPart}.${randomBytes(4).toString('base64url')}.${randomBytes(27).toString('base64url')}`;
}

// ---------------------------------------------------------------------------------------------------------------
// API object builders (discord-api-types shapes that discord.js parses)

export function apiUser(user: EmulatedUser): Record<string, unknown> {
  return {
    id: user.id,
    username: user.username,
    discriminator: user.bot ? '0000' : '0',
    global_name: user.globalName,
    avatar: null,
    bot: user.bot || undefined,
    system: false,
    banner: null,
    accent_color: null,
    public_flags: 0,
    flags: 0,
    avatar_decoration_data: null,
    collectibles: null,
    primary_guild: null,
  };
}

export function apiRole(role: EmulatedRole): Record<string, unknown> {
  return {
    id: role.id,
    name: role.name,
    color: 0,
    colors: { primary_color: 0, secondary_color: null, tertiary_color: null },
    hoist: false,
    icon: null,
    unicode_emoji: null,
    position: role.position,
    permissions: role.permissions.toString(),
    managed: role.managed,
    mentionable: false,
    flags: 0,
    ...(role.botId ? { tags: { bot_id: role.botId } } : {}),
  };
}

export function apiChannel(channel: EmulatedChannel): Record<string, unknown> {
  return {
    id: channel.id,
    type: 0,
    guild_id: channel.guildId,
    name: channel.name,
    position: channel.position,
    permission_overwrites: [],
    nsfw: channel.nsfw,
    parent_id: null,
    topic: null,
    last_message_id: channel.lastMessageId,
    rate_limit_per_user: 0,
    flags: 0,
  };
}

export function apiMember(state: EmulatorState, member: EmulatedMember): Record<string, unknown> {
  const user = state.users.get(member.userId);
  return {
    user: user ? apiUser(user) : undefined,
    nick: null,
    avatar: null,
    banner: null,
    roles: [...member.roleIds],
    joined_at: member.joinedAt,
    premium_since: null,
    deaf: false,
    mute: false,
    flags: 0,
    pending: false,
    communication_disabled_until: null,
  };
}

export function apiGuild(state: EmulatorState, guild: EmulatedGuild): Record<string, unknown> {
  return {
    id: guild.id,
    name: guild.name,
    icon: null,
    icon_hash: null,
    splash: null,
    discovery_splash: null,
    owner_id: guild.ownerId,
    afk_channel_id: null,
    afk_timeout: 300,
    widget_enabled: false,
    widget_channel_id: null,
    verification_level: 0,
    default_message_notifications: 0,
    explicit_content_filter: 0,
    roles: guild.roles.map(apiRole),
    emojis: [],
    stickers: [],
    features: [],
    mfa_level: 0,
    application_id: null,
    system_channel_id: guild.channels[0]?.id ?? null,
    system_channel_flags: 0,
    rules_channel_id: null,
    max_presences: null,
    max_members: 500000,
    vanity_url_code: null,
    description: null,
    banner: null,
    premium_tier: 0,
    premium_subscription_count: 0,
    preferred_locale: 'en-US',
    public_updates_channel_id: null,
    max_video_channel_users: 25,
    max_stage_video_channel_users: 50,
    nsfw_level: 0,
    premium_progress_bar_enabled: false,
    safety_alerts_channel_id: null,
    incidents_data: null,
    hub_type: null,
    approximate_member_count: state.guilds.get(guild.id)?.members.length,
  };
}

/** GUILD_CREATE: the guild plus the bot's view of it. `unavailable: false` is what makes discord.js mark it available. */
export function gatewayGuildCreate(state: EmulatorState, guild: EmulatedGuild): Record<string, unknown> {
  const botMember = guild.members.find((m) => m.userId === state.botUser.id);
  return {
    ...apiGuild(state, guild),
    joined_at: guild.joinedAt,
    large: false,
    unavailable: false,
    member_count: guild.members.length,
    voice_states: [],
    members: botMember ? [apiMember(state, botMember)] : [],
    channels: guild.channels.map(apiChannel),
    threads: [],
    presences: [],
    stage_instances: [],
    guild_scheduled_events: [],
    soundboard_sounds: [],
  };
}
