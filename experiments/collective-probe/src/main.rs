//! Prototype: data-parallel steps across processes with burn-collective 0.21.0 on Flex.
//! `proto-bc orchestrator PORT` | `proto-bc node RANK NODES PORT DATA_PORT STEPS [EXIT_AT]`.
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};

use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor, TensorPrimitive, backend::Backend};
use burn_collective::{
    AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation, all_reduce, register,
};

type Inner = Flex;
type B = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Net<B: Backend> {
    a: Linear<B>,
    b: Linear<B>,
}

/// Every parameter's id and size, in visit order.
struct Layout(Vec<(ParamId, Vec<usize>)>);
impl<B: Backend> ModuleVisitor<B> for Layout {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
        self.0.push((p.id, p.val().dims().to_vec()));
    }
}

/// Replaces each parameter's value by the next slice of `flat` (a fresh leaf that needs grads).
struct Fill {
    flat: Tensor<B, 1>,
    at: usize,
}
impl ModuleMapper<B> for Fill {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, t, mapper) = p.consume();
        let dims = t.dims();
        let n: usize = dims.iter().product();
        let v = self.flat.clone().slice(self.at..self.at + n).reshape(dims);
        self.at += n;
        Param::from_mapped_value(id, v.detach().require_grad(), mapper)
    }
}

fn flatten(module: &Net<Inner>) -> Tensor<Inner, 1> {
    struct Cat(Vec<Tensor<Inner, 1>>);
    impl ModuleVisitor<Inner> for Cat {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Inner, D>>) {
            self.0.push(p.val().flatten(0, D - 1));
        }
    }
    let mut cat = Cat(vec![]);
    module.visit(&mut cat);
    Tensor::cat(cat.0, 0)
}

fn reduce(rank: u32, t: Tensor<Inner, 1>, op: ReduceOperation) -> Tensor<Inner, 1> {
    let out = all_reduce::<Inner>(PeerId::from(rank), t.into_primitive().tensor(), op)
        .unwrap_or_else(|e| {
            eprintln!("rank {rank}: all-reduce failed: {e:?}");
            std::process::exit(3)
        });
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args[1] == "orchestrator" {
        let port: u16 = args[2].parse().unwrap();
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(burn_collective::start_global_orchestrator(port));
        return;
    }
    if args[1] == "single" {
        // One process, the global batch: every rank's shard of each step, concatenated.
        let nodes: u32 = args[2].parse().unwrap();
        let steps: usize = args[3].parse().unwrap();
        let device = Default::default();
        <Inner as Backend>::seed(&device, 100);
        let mut net = Net::<B> {
            a: LinearConfig::new(784, 200).init(&device),
            b: LinearConfig::new(200, 784).init(&device),
        };
        // burn initialises parameters lazily: draw them now, under this seed, as the ranks do.
        let _ = flatten(&net.valid());
        let mut optim = AdamConfig::new().init::<B, Net<B>>();
        for step in 0..steps {
            let shards: Vec<Tensor<B, 2>> = (0..nodes)
                .map(|rank| {
                    <Inner as Backend>::seed(&device, 1000 * step as u64 + rank as u64);
                    Tensor::<B, 2>::random([64, 784], Distribution::Default, &device)
                })
                .collect();
            let x = Tensor::cat(shards, 0);
            let y = net.b.forward(net.a.forward(x.clone()).tanh());
            let loss = (y - x).powf_scalar(2.0).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(1e-3, net, grads);
        }
        let sum: f64 = flatten(&net.valid()).abs().sum().into_scalar() as f64;
        println!("single: {steps} steps, |params|_1 = {sum:.9}");
        return;
    }
    let rank: u32 = args[2].parse().unwrap();
    let nodes: u32 = args[3].parse().unwrap();
    let port: u16 = args[4].parse().unwrap();
    let data_port: u16 = args[5].parse().unwrap();
    let steps: usize = args[6].parse().unwrap();
    let exit_at: Option<usize> = args.get(7).map(|s| s.parse().unwrap());
    let strategy = match std::env::var("STRATEGY").as_deref() {
        Ok("centralized") => AllReduceStrategy::Centralized,
        _ => AllReduceStrategy::Ring,
    };
    let device = Default::default();
    let config = CollectiveConfig::default()
        .with_num_devices(1)
        .with_num_nodes(nodes)
        .with_global_address(format!("ws://127.0.0.1:{port}").parse().unwrap())
        .with_node_address(format!("ws://127.0.0.1:{data_port}").parse().unwrap())
        .with_data_service_port(data_port)
        .with_global_all_reduce_strategy(strategy);
    let t0 = Instant::now();
    register::<Inner>(PeerId::from(rank), device, config).expect("register");
    eprintln!("rank {rank}: registered in {:.2}s", t0.elapsed().as_secs_f64());

    // Rank 0's initial weights everywhere: Sum with zeros from the other ranks.
    <Inner as Backend>::seed(&device, 100 + rank as u64);
    let net = Net::<B> {
        a: LinearConfig::new(784, 200).init(&device),
        b: LinearConfig::new(200, 784).init(&device),
    };
    let flat = flatten(&net.valid());
    let flat = if rank == 0 { flat } else { flat.zeros_like() };
    let flat = Tensor::<B, 1>::from_inner(reduce(rank, flat, ReduceOperation::Sum));
    let mut net = net.map(&mut Fill { flat, at: 0 });
    let mut layout = Layout(vec![]);
    Module::<B>::visit(&net, &mut layout);

    let mut optim = AdamConfig::new().init::<B, Net<B>>();
    let mut reduce_s = 0.0;
    for step in 0..steps {
        if exit_at == Some(step) {
            eprintln!("rank {rank}: exiting at step {step}");
            std::process::exit(9);
        }
        // Each rank its own shard: a different batch per rank and step.
        <Inner as Backend>::seed(&device, 1000 * step as u64 + rank as u64);
        let x = Tensor::<B, 2>::random([64, 784], Distribution::Default, &device);
        let y = net.b.forward(net.a.forward(x.clone()).tanh());
        let loss = (y - x).powf_scalar(2.0).mean();
        let mut grads = GradientsParams::from_grads(loss.backward(), &net);
        // One all-reduce of every gradient, flattened in visit order (no ParamId pairing).
        let parts: Vec<Tensor<Inner, 1>> = layout
            .0
            .iter()
            .map(|(id, dims)| match dims.len() {
                1 => grads.remove::<Inner, 1>(*id).unwrap(),
                2 => grads.remove::<Inner, 2>(*id).unwrap().flatten(0, 1),
                _ => unreachable!(),
            })
            .collect();
        let t = Instant::now();
        let mean = reduce(rank, Tensor::cat(parts, 0), ReduceOperation::Mean);
        reduce_s += t.elapsed().as_secs_f64();
        let mut at = 0;
        for (id, dims) in &layout.0 {
            let n: usize = dims.iter().product();
            let part = mean.clone().slice(at..at + n);
            at += n;
            match dims.len() {
                1 => grads.register::<Inner, 1>(*id, part),
                _ => grads.register::<Inner, 2>(*id, part.reshape([dims[0], dims[1]])),
            }
        }
        net = optim.step(1e-3, net, grads);
    }
    let sum: f64 = flatten(&net.valid()).abs().sum().into_scalar() as f64;
    println!(
        "rank {rank}: {steps} steps, all-reduce {:.2} ms/step, |params|_1 = {sum:.9}",
        1e3 * reduce_s / steps.max(1) as f64
    );
}
