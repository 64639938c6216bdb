"""The face: the astronaut photo's MediaPipe mesh, and the rig that animates it.

Scikit-image's astronaut photo; its 478 MediaPipe face-mesh landmarks are detected once per run
(:func:`detect_face`, passed on explicitly), the mesh (MediaPipe's tesselation plus eye and mouth
fills and a ring of fixed border points for the background) is moved in 3-D (jaw opening with
the audio envelope, blinks, a head turn of known yaw), projected, and the photo is warped
triangle by triangle: each triangle is an affine map, triangles are drawn back to front into an
id buffer with the ones facing away drawn first (so nearer ones hide them), and one
``cv2.remap`` resamples the photo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay


@dataclass(frozen=True)
class Look:
    zoom: float = 1.0  # >1: the face fills more of the frame
    flip: bool = False  # mirror the frame
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB gains


def _cycle(edges) -> list[int]:
    """Order the vertices of a closed loop given as a set of edges."""
    nb: dict[int, list[int]] = {}
    for a, b in edges:
        nb.setdefault(a, []).append(b)
        nb.setdefault(b, []).append(a)
    start = min(nb)
    loop = [start]
    prev, cur = None, start
    while True:
        nxt = [v for v in sorted(nb[cur]) if v != prev][0]
        if nxt == start:
            break
        loop.append(nxt)
        prev, cur = cur, nxt
    return loop


def _mesh_triangles(edges) -> np.ndarray:
    """The faces of the MediaPipe tesselation (its 3-cliques minus separating triangles)."""
    nb: dict[int, set[int]] = {}
    for a, b in edges:
        nb.setdefault(a, set()).add(b)
        nb.setdefault(b, set()).add(a)
    tris = set()
    for a, b in edges:
        for c in nb[a] & nb[b]:
            tris.add(tuple(sorted((a, b, c))))
    use: dict[tuple[int, int], int] = {}
    for t in tris:
        for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])):
            use[e] = use.get(e, 0) + 1
    # A 3-cycle whose every edge is shared by three triangles is not a face of the mesh.
    faces = [t for t in sorted(tris) if not all(use[e] > 2 for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])))]
    return np.array(faces, dtype=np.int64)


@dataclass(frozen=True)
class FaceModel:
    """The photo and its mesh, in source pixels (z in the same scale, larger = farther)."""

    image: np.ndarray  # RGB uint8
    points: np.ndarray  # (478, 3) float64
    triangles: np.ndarray  # (T, 3) tesselation faces
    oval: tuple[int, ...]  # face outline, ordered
    inner_lips: tuple[int, ...]  # mouth opening, ordered
    upper_inner_lip: tuple[int, ...]  # corner to corner along the upper lip
    eyes: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]  # (contour, iris, upper lid)


def detect_face() -> FaceModel:
    """The astronaut's face mesh (MediaPipe, static image mode); detect it once and pass it on."""
    import mediapipe as mp
    import skimage.data

    image = np.ascontiguousarray(skimage.data.astronaut())
    fm = mp.solutions.face_mesh
    with fm.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1, min_detection_confidence=0.5) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        raise RuntimeError("MediaPipe found no face in skimage.data.astronaut()")
    h, w = image.shape[:2]
    pts = np.array([(p.x * w, p.y * h, p.z * w) for p in result.multi_face_landmarks[0].landmark], dtype=np.float64)
    # Rounded so that tiny run-to-run differences in the detector cannot change the bytes.
    pts = np.round(pts, 2)
    inner = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
    eyes = []
    for contour_edges, iris_edges in ((fm.FACEMESH_RIGHT_EYE, fm.FACEMESH_RIGHT_IRIS), (fm.FACEMESH_LEFT_EYE, fm.FACEMESH_LEFT_IRIS)):
        contour = _cycle(contour_edges)
        ring = sorted({v for e in iris_edges for v in e})
        iris = tuple([min(ring) - 1] + ring)  # the centre precedes its four ring points
        xs = pts[contour, 0]
        left, right = contour[int(np.argmin(xs))], contour[int(np.argmax(xs))]
        # Walk the contour from corner to corner both ways; the upper lid is the way with smaller y.
        i, j = contour.index(left), contour.index(right)
        way1 = [contour[(i + k) % len(contour)] for k in range((j - i) % len(contour) + 1)]
        way2 = [contour[(i - k) % len(contour)] for k in range((i - j) % len(contour) + 1)]
        upper = way1 if pts[way1[1:-1], 1].mean() < pts[way2[1:-1], 1].mean() else way2
        eyes.append((tuple(contour), iris, tuple(upper)))
    return FaceModel(
        image=image,
        points=pts,
        triangles=_mesh_triangles(fm.FACEMESH_TESSELATION),
        oval=tuple(_cycle(fm.FACEMESH_FACE_OVAL)),
        inner_lips=inner,
        upper_inner_lip=inner[:11],
        eyes=tuple(eyes),
    )


def _inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in pts])


def _fill_triangles(poly_idx: list[int], extra: list[int], pts2d: np.ndarray) -> list[tuple[int, int, int]]:
    """Delaunay triangles over ``poly_idx + extra`` whose centroid lies inside the polygon."""
    idx = list(poly_idx) + list(extra)
    tri = Delaunay(pts2d[idx])
    cents = pts2d[idx][tri.simplices].mean(axis=1)
    keep = _inside(pts2d[list(poly_idx)], cents)
    return [tuple(idx[v] for v in s) for s, k in zip(tri.simplices, keep) if k]


class FaceRig:
    """The photo, cropped to a square of ``size`` pixels around the face, ready to animate."""

    def __init__(self, face: FaceModel, size: int, look: Look = Look()):
        self.face, self.size, self.look = face, size, look
        # The look is applied to the photo once: a tinted and/or mirrored photo and mesh.
        image, p = face.image, face.points.copy()
        if look.flip:
            image = image[:, ::-1]
            p[:, 0] = image.shape[1] - 1 - p[:, 0]
        if look.tint != (1.0, 1.0, 1.0):
            image = np.clip(np.round(image * np.array(look.tint)), 0, 255).astype(np.uint8)
        self.image = np.ascontiguousarray(image)
        img_h, img_w = image.shape[:2]
        oval = np.array(face.oval)
        ox0, oy0 = p[oval, :2].min(axis=0)
        ox1, oy1 = p[oval, :2].max(axis=0)
        face_w, face_h = ox1 - ox0, oy1 - oy0
        side = min(2.4 * face_h / look.zoom, float(min(img_h, img_w)))
        cx, cy = (ox0 + ox1) / 2, (oy0 + oy1) / 2 + 0.08 * face_h
        x0 = float(np.clip(cx - side / 2, 0, img_w - side))
        y0 = float(np.clip(cy - side / 2, 0, img_h - side))
        s = size / side
        self.scale, self.origin = s, np.array([x0, y0])

        nf = len(p)
        inner = list(face.inner_lips)
        # Vertices: 478 face points, copies of the inner-lip points that ignore the jaw (the
        # teeth stay with the skull), a ring around the head, and fixed points on the border.
        ccx, ccy = (ox0 + ox1) / 2, (oy0 + oy1) / 2
        ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ring = np.stack([ccx + 0.78 * face_w * np.cos(ang), ccy + 0.68 * face_h * np.sin(ang)], axis=1)
        ring = (ring - self.origin) * s
        ring = np.clip(ring, 4.0, size - 5.0)
        lin = np.linspace(-1.0, size, 7)
        border = np.array(
            [(x, -1.0) for x in lin] + [(size, y) for y in lin[1:]] + [(x, size) for x in lin[-2::-1]] + [(-1.0, y) for y in lin[-2:0:-1]]
        )
        self.rest = np.concatenate([(p - np.array([x0, y0, 0.0])) * s, (p[inner] - np.array([x0, y0, 0.0])) * s])
        self.n_moving = len(self.rest)
        fixed = np.concatenate([ring, border])
        self.fixed = fixed
        self.n_ring = len(ring)
        src_fixed = fixed / s + self.origin
        self.src = np.concatenate([p[:, :2], p[inner, :2], src_fixed]).astype(np.float64)
        teeth_ids = {v: nf + k for k, v in enumerate(inner)}
        all_rest2d = np.concatenate([self.rest[:, :2], fixed])

        # Triangles: face, eyes, teeth (inside the inner lips, on the jaw-free copies), background.
        face_tris = [tuple(t) for t in face.triangles]
        eye_tris = []
        for contour, iris, _ in face.eyes:
            eye_tris += _fill_triangles(list(contour), list(iris), all_rest2d)
        teeth = [tuple(teeth_ids[v] for v in t) for t in _fill_triangles(inner, [], all_rest2d)]
        ring_ids = list(range(self.n_moving, self.n_moving + len(fixed)))
        bg = Delaunay(all_rest2d[list(oval) + ring_ids])
        bg_idx = list(oval) + ring_ids
        cents = all_rest2d[bg_idx][bg.simplices].mean(axis=1)
        outside = ~_inside(all_rest2d[list(oval)], cents)
        bg_tris = [tuple(bg_idx[v] for v in sm) for sm, k in zip(bg.simplices, outside) if k]
        self.tris = np.array(face_tris + eye_tris + teeth + bg_tris, dtype=np.int64)
        n2, n3 = len(face_tris) + len(eye_tris), len(face_tris) + len(eye_tris) + len(teeth)
        self.kind = np.zeros(len(self.tris), dtype=np.int8)  # 0 face/eye, 1 teeth, 2 background
        self.kind[n2:n3] = 1
        self.kind[n3:] = 2
        self.rest_area = self._areas(all_rest2d)
        self.cavity = np.array(inner)

        # Pivot of the head turn: on the face's vertical midline, a little over halfway from the
        # nose tip back to the ears, so that the face turns inside the outline of the head.
        ears, nose = self.rest[[234, 454], 2].mean(), self.rest[1, 2]
        self.pivot = np.array([self.rest[oval, 0].mean(), 0.0, nose + 0.55 * (ears - nose)])

        # Jaw: points below the mouth line move down; the lower lip opens as an ellipse, the
        # chin moves as a whole, the cheeks fade out towards the ears.
        r = self.rest
        upper = list(face.upper_inner_lip)
        order = np.argsort(r[upper, 0])
        ux, uy = r[upper, 0][order], r[upper, 1][order]
        mx0, mx1 = ux[0], ux[-1]
        mcx, mw = (mx0 + mx1) / 2, (mx1 - mx0)
        chin = r[152, 1]
        line = np.interp(r[:nf, 0], ux, uy)
        d = (r[:nf, 1] - line) / max(chin - np.interp(mcx, ux, uy), 1.0)
        u = np.abs(r[:nf, 0] - mcx) / (mw / 2)
        fw = face_w * s
        w_in = np.sqrt(np.clip(1 - u**2, 0, 1)) * (1 - np.clip(d / 0.4, 0, 1)) + np.clip(d / 0.4, 0, 1)
        lateral = np.clip(1 - (np.abs(r[:nf, 0] - mcx) - mw / 2) / (fw / 2 - mw / 2), 0, 1)
        w_out = np.clip(d / 0.4, 0, 1) * lateral
        w = np.where(u <= 1, w_in, w_out)
        w = np.where(d > 1e-6, w, 0.0)
        lower_inner = [v for v in inner if v not in upper]
        w[lower_inner] = np.sqrt(np.clip(1 - u[lower_inner] ** 2, 0, 1))
        self.jaw_w = np.concatenate([w, np.zeros(len(inner))])
        self.jaw_amp = 0.11 * face_h * s

        # Blinks: each upper lid, the iris and the skin just above close onto the lower lid.
        dy = np.zeros(self.n_moving)
        for contour, iris, up in face.eyes:
            lower = [v for v in contour if v not in up[1:-1]]
            lo_sorted = sorted(lower, key=lambda v: r[v, 0])
            up_sorted = sorted(up, key=lambda v: r[v, 0])
            lx, ly = r[lo_sorted, 0], r[lo_sorted, 1]
            upx, upy = r[up_sorted, 0], r[up_sorted, 1]
            ex0, ex1 = lx[0], lx[-1]
            ew = ex1 - ex0
            eh = float((np.interp(upx, lx, ly) - upy).max())
            x = r[:nf, 0]
            y = r[:nf, 1]
            xc = np.clip(x, ex0, ex1)
            ylow, yup = np.interp(xc, lx, ly), np.interp(xc, upx, upy)
            lat = np.clip(1 - np.maximum(ex0 - x, x - ex1) / (0.3 * ew), 0, 1)
            between = (y > yup - 1e-6) & (y < ylow - 1e-6)
            above = (y <= yup) & (y > yup - 1.2 * eh)
            full = 0.92 * (ylow - yup)
            move = np.where(between, 0.92 * (ylow - y), np.where(above, full * (1 - (yup - y) / (1.2 * eh)), 0.0)) * lat
            move[list(lower)] = 0.0
            dy[:nf] += np.maximum(move, 0.0)
        self.blink_dy = dy

        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self._xs, self._ys = xs, ys
        self._mouth_rgb = np.array([70, 22, 28], dtype=np.float32)
        self._precompute()

    def _areas(self, pts2d: np.ndarray) -> np.ndarray:
        a, b, c = pts2d[self.tris[:, 0]], pts2d[self.tris[:, 1]], pts2d[self.tris[:, 2]]
        return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))

    def pose(self, mouth: float = 0.0, blink: float = 0.0, yaw_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Projected 2-D positions (output pixels) and depths of every vertex."""
        p = self.rest.copy()
        p[:, 1] += mouth * self.jaw_amp * self.jaw_w + blink * self.blink_dy
        th = math.radians(yaw_deg)
        c, s = math.cos(th), math.sin(th)
        dx, dz = p[:, 0] - self.pivot[0], p[:, 2] - self.pivot[2]
        x = self.pivot[0] + dx * c - dz * s  # positive yaw moves the nose towards image right
        z = self.pivot[2] + dx * s + dz * c
        pts = np.concatenate([np.stack([x, p[:, 1]], axis=1), self.fixed])
        depth = np.concatenate([z, np.full(len(self.fixed), np.inf)])
        return pts, depth

    def _coefficients(self, pts: np.ndarray) -> np.ndarray:
        """Per-triangle affine maps from output to photo pixels, flattened 6 per triangle
        (u = c0 x + c2 y + c4, v = c1 x + c3 y + c5), then two rows: the cavity and the crop map."""
        d = pts[self.tris]
        s = self.src[self.tris]
        dx1, dy1 = d[:, 1, 0] - d[:, 0, 0], d[:, 1, 1] - d[:, 0, 1]
        dx2, dy2 = d[:, 2, 0] - d[:, 0, 0], d[:, 2, 1] - d[:, 0, 1]
        det = dx1 * dy2 - dx2 * dy1
        det = np.where(np.abs(det) < 1e-9, 1.0, det)
        ds1 = s[:, 1] - s[:, 0]  # (n, 2)
        ds2 = s[:, 2] - s[:, 0]
        cx = (ds1 * dy2[:, None] - ds2 * dy1[:, None]) / det[:, None]
        cy = (ds2 * dx1[:, None] - ds1 * dx2[:, None]) / det[:, None]
        c0 = s[:, 0] - cx * d[:, 0, :1] - cy * d[:, 0, 1:]
        coef = np.concatenate([cx, cy, c0], axis=1)
        crop = np.array([1 / self.scale, 0, 0, 1 / self.scale, self.origin[0], self.origin[1]])
        return np.concatenate([coef, crop[None], crop[None]]).astype(np.float32).reshape(-1)

    def _maps(self, ids: np.ndarray, coef: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        base = ids[y0:y1, x0:x1] * 6
        xs, ys = self._xs[y0:y1, x0:x1], self._ys[y0:y1, x0:x1]
        map_x = np.take(coef, base) * xs + np.take(coef, base + 2) * ys + np.take(coef, base + 4)
        map_y = np.take(coef, base + 1) * xs + np.take(coef, base + 3) * ys + np.take(coef, base + 5)
        return map_x, map_y

    def render(self, mouth: float = 0.0, blink: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
        """One RGB frame (size x size, uint8)."""
        size = self.size
        pts, depth = self.pose(mouth, blink, yaw_deg)
        tris, kind = self.tris, self.kind
        n = len(tris)
        cavity_id = n
        area = self._areas(pts)
        drawable = np.abs(area) >= 0.05
        back = np.sign(area) != np.sign(self.rest_area)
        tri_depth = depth[tris].mean(axis=1)
        # Painter's order: faces turned away first (far to near), then the background, the
        # mouth cavity, the teeth, and the visible faces far to near. Triangles whose corners
        # are all fixed are in the precomputed buffer already.
        backs = np.flatnonzero(back & drawable & (kind != 2))
        backs = backs[np.argsort(-tri_depth[backs], kind="stable")]
        bg = np.flatnonzero((kind == 2) & drawable & ~self.static)
        teeth = np.flatnonzero((kind == 1) & drawable & ~back)
        front = np.flatnonzero((kind == 0) & drawable & ~back)
        front = front[np.argsort(-tri_depth[front], kind="stable")]
        corners = np.round(pts * 16).astype(np.int32)[tris]  # 1/16 pixel fixed point
        ids = self._static_ids.copy()
        fill = cv2.fillConvexPoly
        first = np.concatenate([backs, bg])
        for c, i in zip(list(corners[first]), first.tolist()):
            fill(ids, c, i, 8, 4)
        if mouth > 0.02:
            cv2.fillPoly(ids, [np.round(pts[self.cavity] * 16).astype(np.int32)], cavity_id, 8, 4)
        last = np.concatenate([teeth, front])
        for c, i in zip(list(corners[last]), last.tolist()):
            fill(ids, c, i, 8, 4)
        ids[ids < 0] = n + 1

        # Only the box around the moving triangles changes; the rest is the precomputed frame.
        lo = np.floor(np.minimum(pts[: self.n_moving].min(axis=0), self._ring_lo)).astype(int) - 1
        hi = np.ceil(np.maximum(pts[: self.n_moving].max(axis=0), self._ring_hi)).astype(int) + 2
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], size), min(hi[1], size)
        map_x, map_y = self._maps(ids, self._coefficients(pts), y0, y1, x0, x1)
        frame = self._static_frame.copy()
        frame[y0:y1, x0:x1] = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        if mouth > 0.02:
            cx0, cy0 = np.floor(pts[self.cavity].min(axis=0)).astype(int) - 2
            cx1, cy1 = np.ceil(pts[self.cavity].max(axis=0)).astype(int) + 3
            cx0, cy0, cx1, cy1 = max(cx0, 0), max(cy0, 0), min(cx1, size), min(cy1, size)
            cav = ids[cy0:cy1, cx0:cx1] == cavity_id
            if cav.any():
                alpha = cv2.GaussianBlur(cav.astype(np.float32), (3, 3), 0)[..., None]
                depth_y = np.clip((self._ys[cy0:cy1, cx0:cx1] - cy0) / max(cy1 - cy0, 1), 0, 1)[..., None]
                colour = self._mouth_rgb * (1.0 - 0.5 * depth_y)
                box = frame[cy0:cy1, cx0:cx1]
                frame[cy0:cy1, cx0:cx1] = (box * (1 - alpha) + colour * alpha).round().astype(np.uint8)
        return frame

    def _precompute(self) -> None:
        """The id buffer and frame of the triangles that never move (background near the border)."""
        size = self.size
        rest = np.concatenate([self.rest[:, :2], self.fixed])
        self.static = (self.tris >= self.n_moving).all(axis=1)
        ids = np.full((size, size), -1, dtype=np.int32)
        corners = np.round(rest * 16).astype(np.int32)[self.tris]
        for i in np.flatnonzero(self.static).tolist():
            cv2.fillConvexPoly(ids, corners[i], i, 8, 4)
        self._static_ids = ids
        full = ids.copy()
        full[full < 0] = len(self.tris) + 1
        map_x, map_y = self._maps(full, self._coefficients(rest), 0, size, 0, size)
        self._static_frame = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        ring = self.fixed[: self.n_ring]
        self._ring_lo, self._ring_hi = ring.min(axis=0), ring.max(axis=0)

