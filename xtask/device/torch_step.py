"""PyTorch's side of the GPU check: images/s of the CIFAR AlexNet (the anchor's
alexnet_step_torch.py model) and torchvision's AlexNet, forward+backward and with SGD, on the
same inputs as `kindling bench step` (fixed batch, two warm-up steps, the loss read back).

Usage: python3 torch_step.py DEVICE STEPS BATCH[,BATCH...]
Prints: RESULT bench=step framework=torch model=M device=D batch=N ... (one line per model/batch)
"""
import sys, time
import torch, torch.nn as nn

def cifar_alexnet():
    def c(i, o): return nn.Conv2d(i, o, 3, padding=1)
    return nn.Sequential(c(3, 64), nn.ReLU(), nn.MaxPool2d(2), c(64, 192), nn.ReLU(), nn.MaxPool2d(2),
        c(192, 384), nn.ReLU(), c(384, 256), nn.ReLU(), c(256, 256), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Dropout(), nn.Linear(4096, 1024), nn.ReLU(), nn.Dropout(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))

def torchvision_alexnet():
    import torchvision
    return torchvision.models.alexnet(num_classes=1000)

def measure(name, model, side, classes, batch, steps, device):
    torch.manual_seed(0)
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, side, side, device=device)
    y = torch.arange(batch, device=device) % classes
    loss_fn = nn.CrossEntropyLoss()
    fb = total = 0.0
    for step in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        loss.item()  # waits for the device, like kindling's read-back
        t1 = time.perf_counter()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if step >= 2:
            fb += t1 - t0
            total += t2 - t0
    n = steps * batch
    print(f"RESULT bench=step framework=torch-{torch.__version__} model={name} device={device} batch={batch} "
          f"steps={steps} forward_backward_images_per_s={n / fb:.1f} step_images_per_s={n / total:.1f}", flush=True)

def main():
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    batches = [int(b) for b in (sys.argv[3] if len(sys.argv) > 3 else "64,256").split(",")]
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False, PyTorch's GPU step is skipped", flush=True)
        return
    for batch in batches:
        measure("cifar", cifar_alexnet(), 32, 10, batch, steps, device)
        measure("alexnet", torchvision_alexnet(), 224, 1000, batch, steps, device)

if __name__ == "__main__":
    main()
