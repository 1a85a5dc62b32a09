# torchvision AlexNet (224) and the CIFAR AlexNet forward / forward+backward images/s, 2 threads,
# dropout off, batch 1/64/256: the PyTorch side of kindling-model's bench (same shapes).
import sys, time, torch, torch.nn as nn, torchvision
torch.set_num_threads(2); torch.manual_seed(0)
def cifar():
    def c(i,o): return nn.Conv2d(i,o,3,padding=1)
    return nn.Sequential(c(3,64), nn.ReLU(), nn.MaxPool2d(2), c(64,192), nn.ReLU(), nn.MaxPool2d(2),
        c(192,384), nn.ReLU(), c(384,256), nn.ReLU(), c(256,256), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4096,1024), nn.ReLU(), nn.Linear(1024,1024), nn.ReLU(), nn.Linear(1024,10))
for name, m, side in [("cifar", cifar(), 32), ("torchvision", torchvision.models.alexnet(num_classes=10, dropout=0.0), 224)]:
    for n in [1, 64, 256]:
        x = torch.randn(n,3,side,side); y = torch.arange(n) % 10; lf = nn.CrossEntropyLoss()
        iters = 20 if n == 1 else (5 if side == 32 else 2)
        m.eval()
        with torch.no_grad():
            m(x); t0 = time.perf_counter()
            for _ in range(iters): m(x)
            fwd = (time.perf_counter() - t0) / iters
        m.train(); lf(m(x), y).backward(); t0 = time.perf_counter()
        for _ in range(iters):
            m.zero_grad(); lf(m(x), y).backward()
        fb = (time.perf_counter() - t0) / iters
        print(f"{name} batch{n}: forward {n/fwd:.1f} img/s, forward+backward {n/fb:.1f} img/s", flush=True)
