/**
 * GPU benchmark: for one model folder and each execution provider that loads, how long a CFG denoising step takes at
 * 512² (UNet batch 2, 64×64 latents, in the model's own dtypes), how long the VAE decode takes, and how long a whole
 * 30-step image takes, with the UNet's outputs copied to the CPU or (WebGPU) left on the GPU.
 *
 *   npm run build && node dist/bench/gpu.bench.js MODEL_FOLDER [options]      (plain JS: the GPU machine has no tsx)
 *   node --import tsx bench/gpu.bench.ts MODEL_FOLDER [options]                (development)
 *
 * Options:
 *   --providers cuda,webgpu,cpu   which to try (default: all three; those that do not load are reported and skipped)
 *   --size 512                    image side in pixels (latents are size/8)
 *   --steps 10                    timed UNet steps per variant (after 2 warm-up steps)
 *   --image-steps 30              steps of the end-to-end image
 *   --webgpu-layout NCHW|NHWC     WebGPU's preferredLayout (default: ORT's, NCHW)
 *   --pin-shapes                  open the UNet with its input shapes pinned to the benchmark's (pin-shapes.ts), and
 *                                 the pipeline with `pinUnetShapes`: ORT folds the export's shape arithmetic away
 *   --fuse-attention              run the UNet's and VAE decoder's attention as ORT's fused MultiHeadAttention
 *                                 (fuse-attention.ts), in the step variants and in the pipeline images
 *   --json FILE                   also write every figure as JSON
 *   --all-variants                also run the GPU-output variants where outputs cannot stay on the GPU (cpu, cuda):
 *                                 exercises that code on a machine without WebGPU; the figures mean nothing there
 *
 * Last, per provider, a whole image through the production pipeline (`loadPipeline` + `generate`, Euler, no safety
 * checker): with the device loop where it is used by default (WebGPU: latents stay on the GPU) and, where that differs,
 * with the JS loop (`deviceLoop: 'never'`) for comparison; `--all-variants` also forces the device loop elsewhere.
 *
 * See docs/gpu.md for running it on the GPU machine. Figures from random weights time exactly like real ones.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { InferenceSession, Tensor } from 'onnxruntime-node';

import { DeviceStepper } from '../src/diffusion/device-step.js';
import { loadPipeline } from '../src/diffusion/load.js';
import type { DeviceLoopMode } from '../src/diffusion/pipeline.js';
import {
  GpuTensorReader,
  GpuTensorUploader,
  keepsOutputsOnDevice,
  openSession,
  resolveProvider,
  type OpenSessionOptions,
  type ProviderName,
} from '../src/diffusion/providers.js';
import { TensorFeeder, floatsFromData, readFloats } from '../src/diffusion/tensors.js';

interface Args {
  model: string;
  providers: ProviderName[];
  size: number;
  steps: number;
  imageSteps: number;
  webgpuLayout: 'NCHW' | 'NHWC' | undefined;
  json: string | undefined;
  allVariants: boolean;
  pinShapes: boolean;
  fuseAttention: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    model: '',
    providers: ['cuda', 'webgpu', 'cpu'],
    size: 512,
    steps: 10,
    imageSteps: 30,
    webgpuLayout: undefined,
    json: undefined,
    allVariants: false,
    pinShapes: false,
    fuseAttention: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === '--providers') args.providers = value().split(',').map((p) => p.trim()) as ProviderName[];
    else if (arg === '--size') args.size = Number(value());
    else if (arg === '--steps') args.steps = Number(value());
    else if (arg === '--image-steps') args.imageSteps = Number(value());
    else if (arg === '--webgpu-layout') args.webgpuLayout = value() as 'NCHW' | 'NHWC';
    else if (arg === '--json') args.json = value();
    else if (arg === '--all-variants') args.allVariants = true;
    else if (arg === '--pin-shapes') args.pinShapes = true;
    else if (arg === '--fuse-attention') args.fuseAttention = true;
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`);
    else args.model = arg;
  }
  if (!args.model) throw new Error('usage: gpu.bench MODEL_FOLDER [--providers cuda,webgpu,cpu] [--size 512] [--steps 10] [--json FILE]');
  for (const p of args.providers) if (!['cuda', 'webgpu', 'cpu'].includes(p)) throw new Error(`unknown provider ${p}`);
  if (!(args.size > 0 && args.size % 8 === 0)) throw new Error('--size must be a multiple of 8');
  return args;
}

function gpuName(): Promise<string> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=name,driver_version', '--format=csv,noheader'], { timeout: 10000 }, (error, stdout) => {
      resolve(error ? 'unknown (nvidia-smi not available)' : stdout.trim().split('\n').join('; '));
    });
  });
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] ?? NaN;
};
const firstLine = (error: unknown): string => (error instanceof Error ? error.message : String(error)).split('\n')[0]!;
const ms = (value: number): string => `${value.toFixed(1)} ms`;

interface ProviderFigures {
  provider: ProviderName;
  loadSeconds: number;
  unetDtype: string;
  textEncoderMs: number;
  /** Median ms per CFG step, by variant. */
  stepMs: Record<string, number>;
  vaeDecodeMs: number;
  imageSeconds: number;
  imageVariant: string;
  outputsStayedOnGpu: boolean;
  /** Whole images through the production pipeline, by loop. */
  pipelineImages: PipelineImageFigures[];
}

interface PipelineImageFigures {
  loop: 'js' | 'device';
  seconds: number;
  /** Wall time of the denoising loop divided by its steps (UNet, step, read-backs). */
  msPerStep: number;
  unetMsPerStep: number;
  stepGraphMsPerStep: number;
  readBackMs: number;
  decodeMs: number;
}

/**
 * One whole image through `loadPipeline` + `generate` (Euler, the model's tokenizer and scheduler config, no safety
 * checker, no previews), after a 2-step warm-up generation, for each loop mode asked for.
 */
async function benchPipelineImages(args: Args, provider: ProviderName, modes: readonly DeviceLoopMode[]): Promise<PipelineImageFigures[]> {
  const pipeline = await loadPipeline(args.model, {
    provider,
    safetyChecker: false,
    pinUnetShapes: args.pinShapes,
    fuseAttention: args.fuseAttention,
    log: (line) => (line.includes('fused') || line.startsWith('UNet reopened') || line.startsWith('device loop') ? console.log(`  pipeline: ${line}`) : undefined),
  });
  const figures: PipelineImageFigures[] = [];
  try {
    for (const mode of modes) {
      const request = {
        prompt: 'a photograph of an astronaut riding a horse',
        seed: 42n,
        steps: args.imageSteps,
        cfg: 7.5,
        width: args.size,
        height: args.size,
        scheduler: 'euler' as const,
        safetyCheck: false,
      };
      await pipeline.generate({ ...request, steps: 2 }, { deviceLoop: mode });
      const result = await pipeline.generate(request, { deviceLoop: mode });
      const steps = result.timesteps.length;
      const t = result.timings;
      const figure: PipelineImageFigures = {
        loop: result.loop,
        seconds: t.totalMs / 1000,
        msPerStep: t.denoiseMs / steps,
        unetMsPerStep: t.unetMs / steps,
        stepGraphMsPerStep: t.stepGraphMs / steps,
        readBackMs: t.readBackMs,
        decodeMs: t.decodeMs,
      };
      figures.push(figure);
      console.log(
        `  pipeline, ${steps}-step image, ${figure.loop} loop (deviceLoop '${mode}'): ${figure.seconds.toFixed(2)} s; ` +
          `${ms(figure.msPerStep)} per step (UNet run ${ms(figure.unetMsPerStep)}, step graph ${ms(figure.stepGraphMsPerStep)}), ` +
          `read-back ${ms(figure.readBackMs)}, VAE decode ${ms(figure.decodeMs)}`,
      );
    }
  } finally {
    await pipeline.release();
    await pipeline.model.release();
  }
  return figures;
}

/** One CFG UNet batch (uncond + cond) and the host-side work a real step does around it. */
class StepRunner {
  readonly latents: Float32Array;
  private readonly batchInput: Float32Array;
  private readonly noise: Float32Array;
  private readonly sample: TensorFeeder;
  private readonly timestep: TensorFeeder;
  readonly hidden: TensorFeeder;

  constructor(
    private readonly unet: InferenceSession,
    readonly latentSide: number,
    hiddenDims: readonly number[],
  ) {
    const perImage = 4 * latentSide * latentSide;
    this.latents = new Float32Array(perImage);
    for (let i = 0; i < perImage; i++) this.latents[i] = Math.sin(i * 0.7) * 0.8; // deterministic stand-in for noise
    this.batchInput = new Float32Array(2 * perImage);
    this.noise = new Float32Array(2 * perImage);
    this.sample = TensorFeeder.forInput(unet, 'sample', [2, 4, latentSide, latentSide]);
    this.timestep = TensorFeeder.forInput(unet, 'timestep', [2]);
    this.hidden = TensorFeeder.forInput(unet, 'encoder_hidden_states', hiddenDims);
  }

  /** Feeds the current latents (duplicated for CFG) and runs the UNet; the caller reads or keeps the output. */
  async run(timestep: number): Promise<Tensor> {
    this.batchInput.set(this.latents, 0);
    this.batchInput.set(this.latents, this.latents.length);
    const outputs = await this.unet.run({
      sample: this.sample.setFloats(this.batchInput),
      timestep: this.timestep.fill(timestep),
      encoder_hidden_states: this.hidden.tensor,
    });
    const out = outputs.out_sample ?? outputs[this.unet.outputNames[0]!];
    if (!out) throw new Error('the UNet returned no output');
    return out;
  }

  /** CFG combine and a scheduler-like update on the CPU, as the pipeline does once it has the noise prediction. */
  applyNoise(noiseData: { data: unknown; type: string } | Tensor, guidance = 7.5): void {
    if ('location' in noiseData) readFloats(noiseData, this.noise);
    else floatsFromData(noiseData.data, noiseData.type, this.noise);
    const n = this.latents.length;
    for (let i = 0; i < n; i++) {
      const uncond = this.noise[i]!;
      const guided = uncond + guidance * (this.noise[n + i]! - uncond);
      // Keeps values bounded whatever the random weights predict, so fp16 stays finite.
      this.latents[i] = 0.95 * this.latents[i]! + 0.05 * Math.tanh(guided);
    }
  }
}

async function timeSteps(count: number, step: (index: number) => Promise<void>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await step(i);
    times.push(performance.now() - start);
  }
  return times;
}

async function benchProvider(args: Args, provider: ProviderName): Promise<ProviderFigures> {
  const latentSide = args.size / 8;
  const sessionOptions: OpenSessionOptions = args.webgpuLayout ? { webgpu: { preferredLayout: args.webgpuLayout } } : {};
  const fused: OpenSessionOptions = args.fuseAttention ? { fuseAttention: true, log: (line) => console.log(`  ${line}`) } : {};
  let loadMs = 0;
  const open = async (part: string, options: OpenSessionOptions): Promise<InferenceSession> => {
    const started = performance.now();
    const session = await openSession(join(args.model, part, 'model.onnx'), provider, options);
    loadMs += performance.now() - started;
    return session;
  };
  const textEncoder = await open('text_encoder', sessionOptions);
  let unetGpu: InferenceSession | undefined;
  const cleanups: Array<() => Promise<void>> = [];
  let unet: InferenceSession | undefined;
  let vae: InferenceSession | undefined;

  try {
    // Text encoder, CFG batch of two prompts (BOS + EOS padding), as many tokens as the model takes.
    const ids = TensorFeeder.forInput(textEncoder, 'input_ids', [2, 77]);
    ids.setInts(Array.from({ length: 2 * 77 }, (_, i) => (i % 77 === 0 ? 49406 : 49407)));
    const encode = async (): Promise<Tensor> => {
      const out = await textEncoder.run({ input_ids: ids.tensor });
      const hidden = out.last_hidden_state ?? out[textEncoder.outputNames[0]!];
      if (!hidden) throw new Error('text encoder returned no output');
      return hidden;
    };
    const hiddenTensor = await encode();
    // The UNet's shapes are known once the text encoder said its width: pin them if asked.
    const unetOptions: OpenSessionOptions = args.pinShapes
      ? { ...sessionOptions, ...fused, pinnedShapes: { sample: [2, 4, latentSide, latentSide], timestep: [2], encoder_hidden_states: hiddenTensor.dims } }
      : { ...sessionOptions, ...fused };
    unet = await open('unet', unetOptions);
    vae = await open('vae_decoder', { ...sessionOptions, ...fused });
    const loadSeconds = loadMs / 1000;
    console.log(`  loaded text encoder, UNet${args.pinShapes ? ' (input shapes pinned)' : ''}, VAE decoder in ${loadSeconds.toFixed(1)} s`);
    const textEncoderMs = median(await timeSteps(3, async () => void (await encode())));
    const hiddenFloats = readFloats(hiddenTensor, new Float32Array(hiddenTensor.size));

    const runner = new StepRunner(unet, latentSide, hiddenTensor.dims);
    runner.hidden.setFloats(hiddenFloats); // fp32 text encoder → fp16 UNet converts here when the model is fp16
    const unetDtype = runner.hidden.dtype;
    console.log(`  UNet input dtype ${unetDtype}; CFG batch 2 × 4 × ${latentSide} × ${latentSide}; text encoder ${ms(textEncoderMs)}`);

    const stepMs: Record<string, number> = {};
    // Variant A: outputs copied to the CPU by ORT (the only option on cpu and cuda).
    const cpuStep = async (i: number): Promise<void> => runner.applyNoise(await runner.run(999 - i * 33));
    await timeSteps(2, cpuStep);
    stepMs['outputs to CPU'] = median(await timeSteps(args.steps, cpuStep));
    console.log(`  ms per CFG step, outputs to CPU: ${ms(stepMs['outputs to CPU']!)}`);

    let outputsStayedOnGpu = false;
    let imageVariant = 'outputs to CPU';
    let reader: GpuTensorReader | undefined;
    if (keepsOutputsOnDevice(provider) || args.allVariants) {
      // A second UNet session with its output left on the GPU (the first stays open for the end-to-end image, so the
      // GPU holds the UNet's weights twice here).
      unetGpu = await open('unet', { ...unetOptions, preferGpuOutputs: ['out_sample'] });
      const gpuRunner = new StepRunner(unetGpu, latentSide, hiddenTensor.dims);
      gpuRunner.hidden.setFloats(hiddenFloats);
      reader = new GpuTensorReader(provider);

      // Variant B: output stays on the GPU and is not read (the UNet's own throughput; what a GPU-side scheduler
      // would get). The last output is read back at the end so queued GPU work is included in the total.
      try {
        const warm = await gpuRunner.run(999);
        outputsStayedOnGpu = warm.location === 'gpu-buffer';
        console.log(`  UNet output location with preferredOutputLocation 'gpu-buffer': ${warm.location}`);
        warm.dispose();
        const started = performance.now();
        let last: Tensor | undefined;
        for (let i = 0; i < args.steps; i++) {
          last?.dispose();
          last = await gpuRunner.run(999 - i * 33);
        }
        if (last) {
          await reader.read(last);
          last.dispose();
        }
        stepMs['outputs on GPU, not read'] = (performance.now() - started) / args.steps;
        console.log(`  ms per CFG step, outputs on GPU, not read back: ${ms(stepMs['outputs on GPU, not read']!)}`);
      } catch (error) {
        console.log(`  outputs on GPU, not read back: failed: ${firstLine(error)}`);
      }

      // Variant C: output on the GPU, read back each step through the Identity session (JS scheduler).
      try {
        const readStep = async (i: number): Promise<void> => {
          const out = await gpuRunner.run(999 - i * 33);
          const data = await reader!.read(out);
          out.dispose();
          gpuRunner.applyNoise({ data, type: out.type });
        };
        await timeSteps(2, readStep);
        stepMs['outputs on GPU, read back each step'] = median(await timeSteps(args.steps, readStep));
        console.log(`  ms per CFG step, outputs on GPU, read back each step: ${ms(stepMs['outputs on GPU, read back each step']!)}`);
        if (stepMs['outputs on GPU, read back each step']! < stepMs['outputs to CPU']!) imageVariant = 'outputs on GPU, read back each step';
      } catch (error) {
        console.log(`  outputs on GPU, read back each step: failed: ${firstLine(error)}`);
      }
    }

    // Variant D: latents on the GPU. The UNet output feeds the CFG + scheduler step graph (DeviceStepper) on the same
    // provider, whose outputs feed the next UNet call; the text embeddings are uploaded once. Nothing is read back
    // until the end (as a pipeline would for the final decode; previews would read the latents now and then).
    let deviceLoop: ((steps: number) => Promise<Float32Array>) | undefined;
    if (unetGpu) {
      try {
        const session = unetGpu;
        const dtype = runner.hidden.dtype === 'float16' ? 'float16' : 'float32';
        const stepper = await DeviceStepper.open(provider, dtype, { keepOnDevice: true });
        const uploader = new GpuTensorUploader(provider);
        cleanups.push(() => stepper.release(), () => uploader.release());
        const hiddenFeed = TensorFeeder.forInput(session, 'encoder_hidden_states', hiddenTensor.dims);
        const hiddenOnGpu = await uploader.upload(hiddenFeed.setFloats(hiddenFloats));
        const firstSample = TensorFeeder.forInput(session, 'sample', [2, 4, latentSide, latentSide]);
        const timestepFeed = TensorFeeder.forInput(session, 'timestep', [2]);
        const startLatents = new Float32Array(runner.latents);
        deviceLoop = async (steps: number): Promise<Float32Array> => {
          const doubled = new Float32Array(2 * startLatents.length);
          doubled.set(startLatents, 0);
          doubled.set(startLatents, startLatents.length);
          let sample: Tensor = firstSample.setFloats(doubled);
          let latents: Tensor = new ort.Tensor('float32', new Float32Array(startLatents), [1, 4, latentSide, latentSide]);
          for (let i = 0; i < steps; i++) {
            const outputs = await session.run({
              sample,
              timestep: timestepFeed.fill(999 - i * 33),
              encoder_hidden_states: hiddenOnGpu,
            });
            const prediction = outputs.out_sample!;
            const next = await stepper.step(prediction, latents, {
              latents: 0.95,
              prediction: -0.01,
              guidance: 7.5,
              nextInputScale: 1,
            });
            prediction.dispose();
            if (sample.location === 'gpu-buffer') sample.dispose();
            if (latents.location === 'gpu-buffer') latents.dispose();
            sample = next.sample;
            latents = next.latents;
          }
          const data = (await reader!.read(latents)) as Float32Array;
          const result = new Float32Array(data);
          if (sample.location === 'gpu-buffer') sample.dispose();
          if (latents.location === 'gpu-buffer') latents.dispose();
          return result;
        };
        await deviceLoop(2);
        const started = performance.now();
        await deviceLoop(args.steps);
        stepMs['latents on GPU (step graph)'] = (performance.now() - started) / args.steps;
        console.log(`  ms per CFG step, latents on GPU with the step graph: ${ms(stepMs['latents on GPU (step graph)']!)}`);
        const best = Math.min(...Object.entries(stepMs).filter(([k]) => k !== 'outputs on GPU, not read').map(([, v]) => v));
        if (stepMs['latents on GPU (step graph)'] === best) imageVariant = 'latents on GPU (step graph)';
      } catch (error) {
        deviceLoop = undefined;
        console.log(`  latents on GPU with the step graph: failed: ${firstLine(error)}`);
      }
    }

    // VAE decode of one image.
    const decoder = vae;
    const latentFeed = TensorFeeder.forInput(decoder, 'latent_sample', [1, 4, latentSide, latentSide]);
    const decode = async (): Promise<void> => {
      const out = await decoder.run({ latent_sample: latentFeed.setFloats(runner.latents) });
      const image = out.sample ?? out[decoder.outputNames[0]!];
      if (image?.location === 'cpu') void image.data; // the pixels reach the CPU, as they must for a PNG
    };
    await decode();
    const vaeDecodeMs = median(await timeSteps(3, decode));
    console.log(`  VAE decode (1 × ${args.size}²): ${ms(vaeDecodeMs)}`);

    // One whole image, end to end, with the faster of the realistic step variants.
    const imageStart = performance.now();
    await encode();
    if (imageVariant === 'outputs to CPU') {
      for (let i = 0; i < args.imageSteps; i++) await cpuStep(i);
    } else if (imageVariant === 'latents on GPU (step graph)' && deviceLoop) {
      runner.latents.set(await deviceLoop(args.imageSteps)); // the decode below reads runner.latents
    } else {
      const gpuRunner = new StepRunner(unetGpu!, latentSide, hiddenTensor.dims);
      gpuRunner.hidden.setFloats(hiddenFloats);
      for (let i = 0; i < args.imageSteps; i++) {
        const out = await gpuRunner.run(999 - i * 33);
        const data = await reader!.read(out);
        out.dispose();
        gpuRunner.applyNoise({ data, type: out.type });
      }
    }
    await decode();
    const imageSeconds = (performance.now() - imageStart) / 1000;
    console.log(`  one ${args.imageSteps}-step image (${imageVariant}): ${imageSeconds.toFixed(2)} s`);
    await reader?.release();

    return {
      provider,
      loadSeconds,
      unetDtype,
      textEncoderMs,
      stepMs,
      vaeDecodeMs,
      imageSeconds,
      imageVariant,
      outputsStayedOnGpu,
      pipelineImages: [],
    };
  } finally {
    await textEncoder.release();
    for (const cleanup of cleanups) await cleanup().catch(() => {});
    await unet?.release();
    await unetGpu?.release();
    await vae?.release();
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const gpu = await gpuName();
  console.log(
    `gpu.bench: model ${args.model}, ${args.size}², ${args.steps} timed steps per variant; ` +
      `WebGPU layout ${args.webgpuLayout ?? 'default'}; UNet input shapes ${args.pinShapes ? 'pinned' : 'as exported'}; ` +
      `attention ${args.fuseAttention ? 'fused (MultiHeadAttention)' : 'as exported'}`,
  );
  console.log(`machine: GPU ${gpu}; CPU ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}; node ${process.version}`);
  const results: Array<ProviderFigures | { provider: ProviderName; unavailable: string }> = [];
  for (const provider of args.providers) {
    console.log(`\n[${provider}]`);
    try {
      await resolveProvider(provider, null, (line) => console.log(`  ${line}`));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      console.log(`  not available: ${reason}`);
      results.push({ provider, unavailable: reason });
      continue;
    }
    try {
      const figures = await benchProvider(args, provider);
      results.push(figures);
      // After benchProvider released its sessions, so the GPU holds one copy of the model here.
      const modes: DeviceLoopMode[] = keepsOutputsOnDevice(provider) ? ['auto', 'never'] : args.allVariants ? ['auto', 'always'] : ['auto'];
      try {
        figures.pipelineImages = await benchPipelineImages(args, provider, modes);
      } catch (error) {
        console.log(`  pipeline image: failed: ${firstLine(error)}`);
      }
    } catch (error) {
      const reason = error instanceof Error ? error.message.split('\n')[0]! : String(error);
      console.log(`  failed: ${reason}`);
      results.push({ provider, unavailable: `failed during the benchmark: ${reason}` });
    }
  }

  console.log('\nsummary (ms per CFG step | VAE decode | seconds per image | outputs stayed on GPU):');
  for (const result of results) {
    if ('unavailable' in result) {
      console.log(`  ${result.provider.padEnd(7)} not available: ${result.unavailable}`);
      continue;
    }
    const steps = Object.entries(result.stepMs)
      .map(([variant, value]) => `${value.toFixed(1)} (${variant})`)
      .join(', ');
    console.log(
      `  ${result.provider.padEnd(7)} ${result.unetDtype} UNet: ${steps} | ${result.vaeDecodeMs.toFixed(1)} ms | ` +
        `${result.imageSeconds.toFixed(2)} s for ${args.imageSteps} steps | ${result.outputsStayedOnGpu ? 'yes' : 'no'}`,
    );
    for (const image of result.pipelineImages) {
      console.log(
        `  ${''.padEnd(7)} pipeline (${image.loop} loop): ${image.seconds.toFixed(2)} s per ${args.imageSteps}-step image, ` +
          `${image.msPerStep.toFixed(1)} ms per step`,
      );
    }
  }
  if (args.json) {
    await writeFile(args.json, JSON.stringify({ gpu, cpu: cpus()[0]?.model, node: process.version, args, results }, null, 2));
    console.log(`\nwrote ${args.json}`);
  }
}

await main();
